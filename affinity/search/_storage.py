"""The one module that reaches into Optuna's storage layer below the public ``Study``/``Trial``
API: a second ``Study`` object on an already-open storage (each worker has its own sampler),
failing another worker's trial, stale-trial detection and the heartbeat thread of an RDB
storage. Optuna's ``optimize`` does these itself; a search that asks and tells, as affinity's
workers do, has to do them here. When Optuna moves these, only this file changes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import optuna

__all__ = ["fail_running", "heartbeat", "heartbeat_stale", "same_storage"]


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


def heartbeat_stale(study: optuna.Study) -> list[int]:
    """Ids of the RUNNING trials whose heartbeat is older than the storage's grace period
    (an RDB storage opened with a heartbeat interval; empty for any other storage)."""
    from optuna.storages._heartbeat import BaseHeartbeat, is_heartbeat_enabled

    storage = study._storage
    if not isinstance(storage, BaseHeartbeat) or not is_heartbeat_enabled(storage):
        return []
    return list(storage._get_stale_trial_ids(study._study_id))


@contextlib.contextmanager
def heartbeat(study: optuna.Study, trial: optuna.Trial) -> Iterator[None]:
    """Record the trial's heartbeat every interval while the block runs (a no-op without a
    heartbeat-enabled storage), as ``optimize`` does around each trial."""
    from optuna.storages._heartbeat import get_heartbeat_thread

    with get_heartbeat_thread(trial._trial_id, study._storage):
        yield


def trial_id(trial: Any) -> int:
    """The storage id of a live or frozen trial."""
    return int(trial._trial_id)
