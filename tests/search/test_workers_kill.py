"""kill -9 of a whole search on the journal file, then the same command: it resumes and ends
with exactly n_trials; leaderboard.csv and front/*.yaml are whole files at every moment
(read over and over while both runs write them)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import optuna
import pandas as pd
import yaml

from affinity.models.config import ModelCfg
from affinity.search.leaderboard import COLUMNS
from affinity.search.study import counted, default_storage_path, open_storage
from tests.search._freeze import kill_if
from tests.search.spaces import wide_tiny

optuna.logging.set_verbosity(optuna.logging.WARNING)

N = 6


def _cmd() -> list[str]:
    space = wide_tiny()  # tiny.yaml holds 4 configurations, fewer than N
    return [sys.executable, "-c", "from affinity.cli import main; main()", "search", "--space", str(space),
            "--quiet", "--max-steps", "1", "--n-trials", str(N), "--n-jobs", "2", "--study", "k"]  # fmt: skip


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}


def _study() -> optuna.Study | None:
    path = default_storage_path("results", "k")
    if not path.is_file():
        return None
    try:
        return optuna.load_study(study_name="k", storage=open_storage(None, path, create=False))
    except KeyError:
        return None


class _Reader(threading.Thread):
    """Reads the outputs as fast as it can; every read must be a whole file."""

    def __init__(self, folder: Path) -> None:
        super().__init__(daemon=True)
        self.folder = folder
        self.stop = threading.Event()
        self.reads = 0
        self.problems: list[str] = []

    def run(self) -> None:
        while not self.stop.is_set():
            csv = self.folder / "leaderboard.csv"
            try:
                text = csv.read_text()
            except FileNotFoundError:
                text = None
            if text is not None:
                self.reads += 1
                from io import StringIO

                try:
                    board = pd.read_csv(StringIO(text))
                    assert list(board.columns[: len(COLUMNS)]) == list(COLUMNS)
                    assert text.endswith("\n")
                except Exception as exc:
                    self.problems.append(f"leaderboard.csv: {exc!r}")
            for path in sorted((self.folder / "front").glob("*.yaml")):
                try:
                    body = path.read_text()
                except FileNotFoundError:  # removed from the front meanwhile
                    continue
                self.reads += 1
                try:  # the body read above, not the path again: the front may drop the file meanwhile
                    doc = yaml.safe_load(body)
                    assert isinstance(doc, dict)
                    ModelCfg.from_dict(doc["model"], "model")
                except Exception as exc:
                    self.problems.append(f"{path.name}: {exc!r}")
            time.sleep(0.05)


def test_sigkill_of_the_whole_search_then_resume() -> None:
    reader = _Reader(Path("results") / "k")
    reader.start()
    proc = subprocess.Popen(_cmd(), env=_env(), stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 240
    killed = None

    def running_after_two() -> list[optuna.trial.FrozenTrial] | None:
        study = _study()
        if study is None:
            return None
        trials = study.get_trials(deepcopy=False)
        running = [t for t in trials if t.state.name == "RUNNING"]
        return running if counted(trials)[0] >= 2 and running else None

    while time.monotonic() < deadline and proc.poll() is None:
        if running_after_two():  # likely: now make sure, with the command and both workers stopped
            killed = kill_if(proc.pid, running_after_two, group=True)
            if killed:
                break
        time.sleep(0.2)
    proc.wait(timeout=60)
    assert killed, "no trial seen running after 2 finished"
    before = _study()
    assert before is not None
    finished_before = {
        t.number: t.datetime_complete for t in before.trials if t.state.name in ("COMPLETE", "PRUNED")
    }
    # a worker killed in the middle of asking (under the ask lock, after Optuna created the
    # trial and before its PID was recorded) leaves a trial without a PID: reaped as such
    reasons = {True: "its worker process died", False: "its worker died while asking for it"}
    left = {t.number: reasons["pid" in t.user_attrs] for t in before.trials if t.state.name == "RUNNING"}
    assert left  # kill -9 records nothing: the resume must reap them

    again = subprocess.run(_cmd(), env=_env(), capture_output=True, text=True, timeout=300)
    reader.stop.set()
    reader.join()
    assert again.returncode == 0, again.stderr
    after = _study()
    assert after is not None
    trials = after.trials
    assert counted(trials) == (N, 0)
    assert not [t for t in trials if t.state.name in ("RUNNING", "WAITING")]
    for number, reason in left.items():  # recorded interrupted by the resume, evaluated again
        dead = trials[number]
        assert dead.state.name == "FAIL" and dead.user_attrs["status"] == "interrupted"
        assert dead.user_attrs["reason"] == reason
        (redo,) = [t for t in trials if t.user_attrs.get("retry_of") == number]
        assert dead.params.items() <= redo.params.items()
    for number, when in finished_before.items():  # no finished trial lost
        assert trials[number].datetime_complete == when
    assert reader.reads > 0 and not reader.problems, reader.problems[:3]
    board = pd.read_csv(Path("results") / "k" / "leaderboard.csv")
    assert sorted(board["number"]) == [t.number for t in trials]
    print(f"\nkill -9 (journal): {len(left)} trial(s) left RUNNING by the kill, {len(trials)} trials after "
          f"resume, {counted(trials)[0]} counted, {reader.reads} whole-file reads")  # fmt: skip
