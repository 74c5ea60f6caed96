"""Resuming a study with an edited space file (issue 16.2): refused before anything is written
or recorded, one line per difference; ``--allow-space-change`` takes only what Optuna can."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
import yaml

from affinity.search.space_change import differences
from affinity.search.study import default_storage_path, open_storage
from tests._cli import run_main

optuna.logging.set_verbosity(optuna.logging.WARNING)

#: one stage, the axial shift always chosen: shift_size is sampled in every trial
SPACE = {
    "name": "edited",
    "dataset": "digits",
    "img_size": 8,
    "budget": {"epochs": 1, "batch_size": 64, "max_steps": 2},
    "search": {"n_trials": 1, "sampler": "random"},
    "model": {
        "family": "hierarchical",
        "dims": [8],
        "depths": [1],
        "patch_size": 2,
        "channel_mlp_ratio": 1,
        "mixer": {"kind": "axial_shift", "shift_size": {"choice": [1, 3]}, "dilation": {"int": [1, 2]}},
    },
}


def _write(path: Path, **model: object) -> Path:
    doc = {**SPACE, "model": {**SPACE["model"], **model}}
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


def _mixer(**params: object) -> dict[str, object]:
    return {**SPACE["model"]["mixer"], **params}  # type: ignore[dict-item]


def _run(space: Path, *args: str) -> tuple[int, str]:
    ran = run_main(["search", "--space", str(space), "--quiet", *args])
    return ran.code, ran.stdout + ran.stderr


def _trials(name: str = "edited") -> list[optuna.trial.FrozenTrial]:
    storage = open_storage(None, default_storage_path("results", name), create=False)
    return optuna.load_study(study_name=name, storage=storage).get_trials()


@pytest.fixture
def searched(tmp_path: Path) -> Path:
    """A study with one finished trial, created from ``SPACE``."""
    space = _write(tmp_path / "space.yaml")
    code, out = _run(space)
    assert code == 0, out
    assert len(_trials()) == 1
    return space


def test_added_choice_is_refused_before_anything_is_written(searched: Path) -> None:
    copy = Path("results/edited/space.yaml")
    before = copy.read_bytes()
    _write(searched, mixer=_mixer(shift_size={"choice": [1, 3, 5]}), dims=[16])
    code, out = _run(searched, "--n-trials", "2")
    assert code == 2
    lines = out.splitlines()
    assert lines[0].startswith("affinity: error: study 'edited' was created from another space")
    assert "  model.dims: [8] -> [16]" in lines
    assert "  model.mixer.shift_size.choice: [1, 3] -> [1, 3, 5]" in lines
    assert lines[-1].startswith("allowed: the same space, a new --study NAME, or --allow-space-change")
    assert "Traceback" not in out
    # nothing recorded, nothing overwritten
    assert [t.state.name for t in _trials()] == ["COMPLETE"]
    assert copy.read_bytes() == before
    # an added choice is not something Optuna can take: the flag refuses it too, naming it
    code, out = _run(searched, "--n-trials", "2", "--allow-space-change")
    assert code == 2
    assert "--allow-space-change cannot take" in out.splitlines()[0]
    assert "  model.mixer.shift_size: choice [1, 3] -> choice [1, 3, 5]" in out.splitlines()
    assert "model.dims" not in out
    assert len(_trials()) == 1
    assert copy.read_bytes() == before
    # a study recorded before spaces were: the trials' own distributions still refuse it
    study = optuna.load_study(
        study_name="edited",
        storage=open_storage(None, default_storage_path("results", "edited"), create=False),
    )
    study.set_user_attr("affinity", {k: v for k, v in study.user_attrs["affinity"].items() if k != "model"})
    code, out = _run(searched, "--n-trials", "2")
    assert code == 2
    assert "  model.mixer.shift_size: choice [1, 3] -> choice [1, 3, 5]" in out.splitlines()
    assert "(not for model.mixer.shift_size: Optuna cannot take that change)" in out.splitlines()[-1]
    assert len(_trials()) == 1
    # a new study name runs it
    code, out = _run(searched, "--n-trials", "1", "--study", "edited2")
    assert code == 0, out
    assert len(_trials("edited2")) == 1


def test_allowed_change_resumes_and_is_the_new_reference(searched: Path) -> None:
    # a moved int range and a changed fixed value: Optuna takes both
    _write(searched, mixer=_mixer(dilation={"int": [1, 3]}), channel_mlp_ratio=2)
    code, out = _run(searched, "--n-trials", "2")
    assert code == 2
    assert "  model.channel_mlp_ratio: 1 -> 2" in out.splitlines()
    assert "  model.mixer.dilation.int: [1, 2] -> [1, 3]" in out.splitlines()
    code, out = _run(searched, "--n-trials", "2", "--allow-space-change")
    assert code == 0, out
    trials = _trials()
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE"]
    assert trials[1].distributions["model.mixer.dilation"].high == 3
    assert yaml.safe_load(Path("results/edited/space.yaml").read_text())["model"]["channel_mlp_ratio"] == 2
    # the edited space is now the study's: resuming with it needs no flag
    code, out = _run(searched, "--n-trials", "2")
    assert code == 0, out


def test_differences_name_key_paths() -> None:
    old = {"a": 1, "b": {"c": [1, 2], "d": True}, "e": "x"}
    new = {"a": 1.0, "b": {"c": [1, 2, 3], "d": 1}, "f": None}
    assert differences(old, new, "model") == [
        "model.a: 1 -> 1.0",
        "model.b.c: [1, 2] -> [1, 2, 3]",
        "model.b.d: true -> 1",
        "model.e: x -> (absent)",
        "model.f: (absent) -> null",
    ]
