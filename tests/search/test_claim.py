"""Two workers proposed the same configuration at once: only one trains it, the other waits
and copies its result (a configuration must not count twice towards n_trials)."""

from __future__ import annotations

import os
import subprocess
import threading
from pathlib import Path
from typing import Any

import optuna

from affinity.search._worker import RunSpec, claim
from affinity.search.space import load_space
from affinity.search.storages import ask_lock
from affinity.search.study import HOST, default_storage_path, open_storage

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _setup() -> tuple[optuna.Study, RunSpec]:
    space = load_space("tiny.yaml")
    folder = Path("results") / "c"
    storage = open_storage(None, default_storage_path("results", "c"), create=True)
    study = optuna.create_study(study_name="c", storage=storage, directions=["maximize", "minimize"])
    return study, RunSpec(space, space.settings, "c", folder, None, 4, ("cpu",), 1)


def _ask(study: optuna.Study, spec: RunSpec) -> optuna.Trial:
    """As a worker asks: under the ask lock, host and PID recorded with the ask (a trial
    without them is one whose worker died while asking, and a claim's reaping fails it)."""
    with ask_lock(spec.storage, spec.study, spec.lock):
        trial = study.ask()
        trial.set_user_attr("host", HOST)
        trial.set_user_attr("pid", os.getpid())
    return trial


def test_second_claim_waits_for_the_first_and_copies_it() -> None:
    study, spec = _setup()
    first, second = _ask(study, spec), _ask(study, spec)
    assert claim(study, spec, first, "x") is None  # first: trains it
    got: list[Any] = []
    waiter = threading.Thread(target=lambda: got.append(claim(study, spec, second, "x")))
    waiter.start()
    waiter.join(timeout=1.5)
    assert waiter.is_alive() and not got  # x is being trained by `first`: it waits
    assert claim(study, spec, _ask(study, spec), "y") is None  # another configuration is not held up
    first.set_user_attr("config_hash", "x")
    first.set_user_attr("status", "ok")
    study.tell(first, [0.5, 0.1])
    waiter.join(timeout=60)
    assert not waiter.is_alive()
    assert got[0].number == first.number  # a duplicate of the trained one
    assert "claimed" not in study.trials[second.number].user_attrs


def test_a_dead_claimers_configuration_is_taken_over() -> None:
    study, spec = _setup()
    gone = subprocess.Popen(["true"])
    gone.wait()
    dead = _ask(study, spec)
    assert claim(study, spec, dead, "x") is None
    dead.set_user_attr("pid", gone.pid)  # then its worker died
    live = _ask(study, spec)
    assert claim(study, spec, live, "x") is None  # the dead one is reaped, this one trains x
    trials = study.get_trials(deepcopy=False)
    assert trials[dead.number].state.name == "FAIL"
    assert trials[dead.number].user_attrs["status"] == "interrupted"
    assert trials[live.number].user_attrs["claimed"] == "x"
