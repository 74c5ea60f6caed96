"""Two workers proposed the same configuration at once: only one trains it, the other waits
and copies its result (a configuration must not count twice towards n_trials); a worker's
tell waits for a reap under way (the two never interleave); a reaped trial's configuration is
queued again even when it was cut off before sampling it."""

from __future__ import annotations

import os
import subprocess
import threading
from pathlib import Path
from typing import Any

import optuna

from affinity.search._storage import fail_running, trial_id
from affinity.search._worker import RunSpec, _tell, claim
from affinity.search.objective import Outcome
from affinity.search.space import load_space
from affinity.search.storages import ask_lock
from affinity.search.study import HOST, counted, default_storage_path, open_storage, reap_stale

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


def test_a_tell_waits_for_a_reap_under_way() -> None:
    study, spec = _setup()
    trial = _ask(study, spec)
    told: list[bool] = []
    with ask_lock(spec.storage, spec.study, spec.lock):  # another worker reaping (a late heartbeat)
        teller = threading.Thread(
            target=lambda: told.append(
                _tell(study, spec, trial, Outcome("COMPLETE", [0.5, 0.1], {"status": "ok"}), 0)
            )
        )
        teller.start()
        teller.join(timeout=1.0)
        assert teller.is_alive() and not told  # its status and state wait for the reap
        assert fail_running(study, trial_id(trial), {"status": "interrupted", "reason": "late"})
    teller.join(timeout=60)
    assert told == [False]  # dropped: the reap came first
    (frozen,) = study.get_trials(deepcopy=False)
    assert frozen.state.name == "FAIL" and frozen.user_attrs["status"] == "interrupted"
    assert counted([frozen]) == (0, 0)


def test_a_retry_cut_off_while_asking_keeps_its_configuration() -> None:
    study, spec = _setup()
    study.enqueue_trial({"model.mixer.shift_size": 3}, user_attrs={"retry_of": 0})
    with ask_lock(spec.storage, spec.study, spec.lock):
        study.ask()  # the queued retry, popped; then the worker dies before recording its PID
    with ask_lock(spec.storage, spec.study, spec.lock):
        assert reap_stale(study) == 1
    cut, again = study.get_trials(deepcopy=False)
    assert cut.user_attrs["reason"] == "its worker died while asking for it"
    assert again.state.name == "WAITING" and again.user_attrs["retry_of"] == 0
    assert again.system_attrs["fixed_params"] == {"model.mixer.shift_size": 3}
