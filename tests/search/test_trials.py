"""A configuration's result does not depend on when, where or how often it ran: the same
configuration gives the same val accuracy (exactly, on the CPU) as trial 0 or trial 5, in
this process or another, with one worker or two, and across a kill and a resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from click.testing import CliRunner

from affinity.cli import cli
from affinity.search.objective import trial_seed
from affinity.search.space import load_space, resolve_space_path
from affinity.search.study import create_or_resume, default_storage_path, open_storage

optuna.logging.set_verbosity(optuna.logging.WARNING)

KIND, SHIFT, PAD = "model.mixer.kind", "model.mixer.shift_size", "model.mixer.padding"
RATIO = "model.channel_mlp_ratio"
#: the configuration every test follows, and others to run around it
TARGET = {KIND: "axial_shift", SHIFT: 3, PAD: "circular", RATIO: 2}
OTHERS = [
    {KIND: "axial_shift", SHIFT: 1, PAD: "zero", RATIO: 1},
    {KIND: "spatial_shift", RATIO: 1},
    {KIND: "axial_shift", SHIFT: 3, PAD: "zero", RATIO: 1},
    {KIND: "axial_shift", SHIFT: 1, PAD: "circular", RATIO: 2},
    {KIND: "spatial_shift", RATIO: 2},
]


def _space(tmp: Path, epochs: int = 1) -> Path:
    """tiny.yaml with the channel-MLP ratio searched too (10 distinct configurations)."""
    doc = yaml.safe_load(resolve_space_path("tiny.yaml").read_text())
    doc["model"]["channel_mlp_ratio"] = {"choice": [1, 2]}
    doc["budget"]["epochs"] = epochs
    path = tmp / "tiny2.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def _enqueue(space_file: Path, name: str, configs: list[dict[str, Any]]) -> None:
    """Create study ``name`` as ``affinity search`` would, with ``configs`` queued in order."""
    space = load_space(str(space_file))
    storage = open_storage(None, default_storage_path("results", name), create=True)
    study = create_or_resume(name, storage, space, space.settings)
    for params in configs:
        study.enqueue_trial(params)


def _cmd(space_file: Path, name: str, *args: str) -> list[str]:
    return [sys.executable, "-c", "from affinity.cli import main; main()", "search", "--space",
            str(space_file), "--study", name, "--quiet", *args]  # fmt: skip


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}


def _search_here(space_file: Path, name: str, *args: str) -> None:
    """``affinity search`` in this process (no torch import to pay for)."""
    res = CliRunner().invoke(cli, _cmd(space_file, name, *args)[3:], catch_exceptions=False)
    assert res.exit_code == 0, res.output


def _trials(name: str) -> list[optuna.trial.FrozenTrial]:
    storage = open_storage(None, default_storage_path("results", name), create=False)
    return optuna.load_study(study_name=name, storage=storage).trials


def _accuracies(name: str) -> dict[str, float]:
    """config_hash -> val accuracy of the trials that trained (status ok)."""
    return {t.user_attrs["config_hash"]: t.user_attrs["val_acc"] for t in _trials(name)
            if t.user_attrs.get("status") == "ok"}  # fmt: skip


def _hash_of(name: str, params: dict[str, Any]) -> str:
    (trial,) = [t for t in _trials(name) if t.params == params]
    return str(trial.user_attrs["config_hash"])


def test_trial_seed_depends_on_the_study_seed_the_config_and_the_repeat_only() -> None:
    seed = trial_seed(0, "abcdef012345")
    assert seed == trial_seed(0, "abcdef012345")
    assert 0 <= seed < 2**31
    others = {trial_seed(1, "abcdef012345"), trial_seed(0, "abcdef012346"), trial_seed(0, "abcdef012345", 1)}
    assert seed not in others and len(others) == 3


def test_same_config_as_trial_0_here_and_trial_5_in_another_process(tmp_path: Path) -> None:
    space = _space(tmp_path)
    _enqueue(space, "first", [TARGET])
    _search_here(space, "first", "--n-trials", "1")
    _enqueue(space, "later", [*OTHERS, TARGET])
    out = subprocess.run(_cmd(space, "later", "--n-trials", "6"), capture_output=True, text=True,
                         env=_env(), timeout=300)  # fmt: skip
    assert out.returncode == 0, out.stderr
    digest = _hash_of("first", TARGET)
    assert _hash_of("later", TARGET) == digest
    first, later = _accuracies("first"), _accuracies("later")
    assert len(later) == 6  # five other configurations trained before it, in that process
    assert first[digest] == later[digest]


def test_one_worker_and_two_workers_give_the_same_accuracies(tmp_path: Path) -> None:
    space = _space(tmp_path)
    configs = [TARGET, *OTHERS[:3]]
    _enqueue(space, "one", configs)
    _search_here(space, "one", "--n-trials", "4", "--n-jobs", "1")
    _enqueue(space, "two", configs)
    out = subprocess.run(_cmd(space, "two", "--n-trials", "4", "--n-jobs", "2"), capture_output=True,
                         text=True, env=_env(), timeout=300)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert {t.user_attrs["worker"] for t in _trials("two")} == {0, 1}
    one = _accuracies("one")
    assert len(one) == 4
    assert one == _accuracies("two")


def test_killed_and_resumed_study_matches_an_uninterrupted_one(tmp_path: Path) -> None:
    space = _space(tmp_path, epochs=2)
    configs = [TARGET, *OTHERS]
    _enqueue(space, "whole", configs)
    _search_here(space, "whole", "--n-trials", "6")
    whole = _accuracies("whole")
    assert len(whole) == 6

    _enqueue(space, "cut", configs)
    proc = subprocess.Popen(_cmd(space, "cut", "--n-trials", "6"), env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 240
    while len(_accuracies("cut")) < 2:  # kill it once two trials are finished
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            pytest.fail("the first run did not finish two trials, or ended before it could be killed")
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    before = _accuracies("cut")
    assert 2 <= len(before) < 6
    _search_here(space, "cut", "--n-trials", "6")
    resumed = _accuracies("cut")
    common = set(resumed) & set(whole)
    assert len(common) >= 5  # the killed trial's configuration may have been replaced by a new one
    assert {h: resumed[h] for h in common} == {h: whole[h] for h in common}


def test_affinity_train_on_a_front_file_reproduces_the_leaderboard_exactly(tmp_path: Path) -> None:
    space = _space(tmp_path)
    _search_here(space, "front", "--n-trials", "3")
    trials = {t.number: t for t in _trials("front")}
    files = sorted((Path("results") / "front" / "front").glob("trial_*.yaml"))
    assert files
    path = files[0]
    trial = trials[int(path.stem.removeprefix("trial_"))]
    doc = yaml.safe_load(path.read_text())
    settings = load_space(str(space)).settings
    assert doc["dataset"] == "digits" and doc["img_size"] == settings.img_size
    assert doc["data_seed"] == settings.seed and doc["seed"] == trial.user_attrs["seed"] != settings.seed
    assert doc["budget"]["epochs"] == 1 and doc["budget"]["lr"] == settings.budget.lr
    # a fresh process, no flag but --run-dir: torch's own thread count, as a user would run it
    env = {k: v for k, v in _env().items() if k != "OMP_NUM_THREADS"}
    cmd = [
        sys.executable,
        "-c",
        "from affinity.cli import main; main()",
        "train",
        str(path),
        "--run-dir",
        "run",
    ]
    out = subprocess.run([*cmd, "--quiet"], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    metrics = json.loads(Path("run", "metrics.json").read_text())["metrics"]
    assert metrics["val_acc"] == trial.user_attrs["val_acc"]
