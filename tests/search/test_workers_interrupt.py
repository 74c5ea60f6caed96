"""Ctrl-C at every phase of a trial, chosen by the test through ``on_phase`` (no sleeps): no
trial is ever left RUNNING, an interrupted trial's configuration is evaluated again on
resume, and the study then ends with exactly its target of finished trials."""

from __future__ import annotations

import signal
from collections import Counter
from pathlib import Path

import optuna
import pandas as pd
import pytest

from affinity.search.runner import PHASES, RunSpec, run_search
from affinity.search.space import load_space, with_overrides
from affinity.search.study import counted, create_or_resume, default_storage_path, open_storage

optuna.logging.set_verbosity(optuna.logging.WARNING)

#: phases where the trial is not told yet: Ctrl-C there records it interrupted
BEFORE_TELL = PHASES[: PHASES.index("tell")]
ITERATIONS = 56  # 7 rounds of the 8 phases, interrupting trial 0 or 1 of a fresh study
RESUMED = 16  # the first two rounds also resume to the end (each resume costs a few trials)


def _spec(name: str, target: int) -> RunSpec:
    space = load_space("tiny.yaml")
    settings = with_overrides(space.settings, max_steps=1, n_trials=target)
    store = open_storage(None, default_storage_path("results", name), create=True)
    create_or_resume(name, store, space, settings)
    return RunSpec(space, settings, name, Path("results") / name, None, target, ("cpu",), 1)


def _study(name: str) -> optuna.Study:
    storage = open_storage(None, default_storage_path("results", name), create=False)
    return optuna.load_study(study_name=name, storage=storage)


def test_ctrl_c_at_every_phase_leaves_no_trial_running() -> None:
    hits: Counter[str] = Counter()
    left_running = 0
    for i in range(ITERATIONS):
        phase = PHASES[i % len(PHASES)]
        first = (i // len(PHASES)) % 2  # the first trial number the interrupt may hit
        name = f"c{i}"
        spec = _spec(name, target=first + 2)
        hit: list[int] = []

        def hook(now: str, number: int, phase: str = phase, first: int = first, hit: list[int] = hit) -> None:
            if now == phase and number >= first and not hit:
                hit.append(number)
                signal.raise_signal(signal.SIGINT)

        with pytest.raises(KeyboardInterrupt):
            run_search(spec, n_jobs=1, progress=False, on_phase=hook)
        assert hit, f"iteration {i}: phase {phase} never reached"
        hits[phase] += 1
        study = _study(name)
        trials = study.get_trials(deepcopy=False)
        left_running += sum(t.state.name == "RUNNING" for t in trials)
        assert not [t.number for t in trials if t.state.name == "RUNNING"], (i, phase)
        struck = trials[hit[0]]
        waiting = [t for t in trials if t.state.name == "WAITING"]
        if phase in BEFORE_TELL:
            assert struck.state.name == "FAIL" and struck.user_attrs["status"] == "interrupted", (i, phase)
            queued = [(t.user_attrs["retry_of"], t.system_attrs["fixed_params"]) for t in waiting]
            assert queued == [(struck.number, struck.params)], (i, phase)
        else:
            assert struck.state.name in ("COMPLETE", "PRUNED", "FAIL"), (i, phase)
            assert struck.user_attrs["status"] != "interrupted" and not waiting, (i, phase)
        # the leaderboard is whole and lists every trial (rewritten as the run ended)
        board = pd.read_csv(spec.folder / "leaderboard.csv")
        assert sorted(board["number"]) == [t.number for t in trials]

        if i >= RESUMED:
            continue
        # resuming finishes the study: exactly its target, the interrupted configuration redone
        run_search(spec, n_jobs=1, progress=False)
        trials = _study(name).get_trials(deepcopy=False)
        assert counted(trials) == (spec.target, 0)
        assert not [t for t in trials if t.state.name in ("RUNNING", "WAITING")]
        if phase in BEFORE_TELL:
            (redo,) = [t for t in trials if t.user_attrs.get("retry_of") == struck.number]
            assert redo.user_attrs["status"] != "interrupted"
            assert struck.params.items() <= redo.params.items()
        assert len(pd.read_csv(spec.folder / "leaderboard.csv")) == len(trials)
    assert left_running == 0
    assert set(hits) == set(PHASES) and min(hits.values()) == ITERATIONS // len(PHASES)
    print(f"\nCtrl-C loop: {ITERATIONS} iterations, phases hit {dict(hits)}, left RUNNING {left_running}")
