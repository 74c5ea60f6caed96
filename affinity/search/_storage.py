"""The one module that reaches into Optuna's storage layer below the public ``Study``/``Trial``
API: a second ``Study`` object on an already-open storage (each worker has its own sampler),
failing another worker's trial, stale-trial detection and the heartbeat thread of an RDB
storage. Optuna's ``optimize`` does these itself; a search that asks and tells, as affinity's
workers do, has to do them here. When Optuna moves these, only this file changes.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import optuna

__all__ = [
    "fail_running",
    "first_beat",
    "heartbeat",
    "heartbeat_enabled",
    "heartbeat_stale",
    "reset_session",
    "same_storage",
    "trial_id",
]


def same_storage(study: optuna.Study, *, sampler: Any, pruner: Any) -> optuna.Study:
    """``study`` again, on its open storage (no second connection), with another sampler."""
    import optuna

    return optuna.load_study(
        study_name=study.study_name, storage=study._storage, sampler=sampler, pruner=pruner
    )


def fail_running(study: optuna.Study, trial_id: int, attrs: dict[str, Any]) -> bool:
    """Record ``attrs`` on a RUNNING trial of any worker and mark it FAIL; False when another
    worker finished or failed it first (then nothing is changed by this call)."""
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.trial import TrialState

    storage = study._storage
    try:
        for key, value in attrs.items():
            storage.set_trial_user_attr(trial_id, key, value)
        return bool(storage.set_trial_state_values(trial_id, TrialState.FAIL))
    except (UpdateFinishedTrialError, RuntimeError):  # RuntimeError: the journal's message
        return False


def heartbeat_enabled(study: optuna.Study) -> bool:
    """True for a storage that records trial heartbeats (an RDB storage opened with one)."""
    from optuna.storages._heartbeat import is_heartbeat_enabled

    return bool(is_heartbeat_enabled(study._storage))


def first_beat(study: optuna.Study, trial: optuna.Trial) -> None:
    """Record a new trial's first heartbeat, under the ask lock with the ask itself: Optuna
    never counts a trial without a heartbeat as stale, so a worker killed between asking and
    its first beat would leave its trial RUNNING for ever."""
    if heartbeat_enabled(study):
        storage: Any = study._storage
        storage.record_heartbeat(trial._trial_id)


def heartbeat_stale(study: optuna.Study) -> list[int]:
    """Ids of the RUNNING trials whose heartbeat is older than the storage's grace period
    (empty without a heartbeat storage)."""
    if not heartbeat_enabled(study):
        return []
    storage: Any = study._storage
    return list(storage._get_stale_trial_ids(study._study_id))


@contextlib.contextmanager
def heartbeat(study: optuna.Study, trial: optuna.Trial) -> Iterator[None]:
    """Record the trial's heartbeat every interval while the block runs (a no-op
    without a heartbeat storage). Unlike Optuna's own thread, a failed beat (the server is
    restarting) is not fatal: the next one is tried an interval later, so a worker survives
    a database restart shorter than the grace period."""
    if not heartbeat_enabled(study):
        yield
        return
    storage: Any = study._storage
    interval = float(storage.get_heartbeat_interval())
    number = trial._trial_id
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(interval):
            with contextlib.suppress(Exception):
                storage.record_heartbeat(number)

    thread = threading.Thread(target=beat, name=f"heartbeat-{trial.number}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def reset_session(study: optuna.Study) -> None:
    """After a lost connection: drop this thread's database session, so the next query opens
    a new one (Optuna's own reads can leave it stuck in "invalid transaction")."""
    backend = getattr(study._storage, "_backend", study._storage)
    session = getattr(backend, "scoped_session", None)
    if session is not None:
        with contextlib.suppress(Exception):
            session.rollback()
        with contextlib.suppress(Exception):
            session.remove()


def trial_id(trial: Any) -> int:
    """The storage id of a live or frozen trial."""
    return int(trial._trial_id)
