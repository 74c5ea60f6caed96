"""Creating and resuming a study: directions, the checks a resuming or joining worker
passes, samplers, pruners, trial accounting and reaping (storage: ``storages``).

Trial accounting (``finished`` / ``live``) is shared by the workers: ``n_trials`` is the
*total* the study should hold, so running the same command again resumes and runs only
what is missing (as ``optuna.study.MaxTrialsCallback`` does for ``optimize``).
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Any

from affinity.errors import SpaceError, StudyError
from affinity.search.settings import SAMPLERS
from affinity.search.storages import default_storage_path, mask_url, open_storage

if TYPE_CHECKING:
    from collections.abc import Callable

    import optuna

    from affinity.search.space import Settings, Space

__all__ = [
    "STATUSES",
    "configurations",
    "counted",
    "create_or_resume",
    "default_storage_path",
    "directions",
    "distinct_configurations",
    "duplicates",
    "listed_configurations",
    "make_pruner",
    "make_sampler",
    "metric_names",
    "open_storage",
    "reap_stale",
    "study_names",
    "unlisted",
]

#: the ``status`` user attribute of every trial, and the Optuna state it goes with:
#: ok (COMPLETE), duplicate (the state of the trial it repeats), over_budget (PRUNED: costed,
#: never trained), pruned (PRUNED by the pruner), rejected (FAIL: the models refused the
#: combination; ``reason`` says why), interrupted (FAIL: Ctrl-C or a dead worker; redone on
#: resume), error (FAIL: an unexpected exception, a bug), stopped (PRUNED: --fidelity asha
#: stopped it at a rung, ``affinity.search.fidelity``), proxy_only (PRUNED: --prescreen scored
#: it and trained another proposal, ``affinity.search.prescreen``).
STATUSES = (
    *("ok", "duplicate", "over_budget", "pruned", "rejected", "interrupted", "error"),
    *("stopped", "proxy_only"),
)
#: statuses that do not count towards n_trials: an interrupted trial is run again on resume;
#: a duplicate is recorded (the sampler sees its reused result) but trains nothing, so
#: ``n_trials`` counts distinct evaluations; a proxy-only proposal was scored, not trained
NOT_COUNTED = ("interrupted", "duplicate", "proxy_only")
#: a worker stops after this many duplicate proposals in a row (the sampler keeps proposing
#: what was evaluated: the space is nearly exhausted or the sampler has converged)
MAX_CONSECUTIVE_DUPLICATES = 20
#: the machine a worker records on its trials, for reaping by PID: ``$AFFINITY_HOST`` where
#: hostnames repeat across machines (containers), else the host name
HOST = os.environ.get("AFFINITY_HOST") or socket.gethostname()


def load_study(name: str, storage: str | None = None, *, out: str | Path = "results") -> optuna.Study:
    """Load study ``name`` as ``affinity search`` stored it: its journal file
    ``OUT/<name>/journal.log`` by default, or any Optuna storage URL.

    A missing storage or an unknown study is a ``StudyError`` naming what exists instead.
    """
    import optuna

    path = default_storage_path(out, name)
    if storage is None and not path.is_file():
        found = sorted(p.parent.name for p in Path(out).glob("*/journal.log"))
        raise StudyError(
            f"study {name!r} not found under {out}/ (studies there: {', '.join(found) or 'none'}; "
            "or pass --storage URL)"
        )
    store = open_storage(storage, path, create=False)
    names = study_names(store)
    if name not in names:
        listed = ", ".join(names) or "none"
        raise StudyError(
            f"study {name!r} is not in {mask_url(storage) if storage else path} (studies there: {listed})"
        )
    return optuna.load_study(study_name=name, storage=store)


def study_names(storage: Any) -> list[str]:
    import optuna

    return sorted(s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False))


def directions(objective: str) -> list[str]:
    """pareto: maximise val accuracy, minimise GFLOPs; accuracy: maximise val accuracy."""
    return ["maximize", "minimize"] if objective == "pareto" else ["maximize"]


def metric_names(objective: str) -> list[str]:
    """The objectives' names as Optuna records them (optuna-dashboard and Optuna's plots
    label their axes with them), in the order of ``directions``."""
    return ["val_acc", "gflops"] if objective == "pareto" else ["val_acc"]


def create_or_resume(
    name: str, storage: Any, space: Space, settings: Settings, *, allow_space_change: bool = False
) -> optuna.Study:
    """Create the study, or load it when it exists and was run with the same objectives,
    training settings (a different budget or dataset would make accuracies incomparable) and
    space (see ``space_change``; ``allow_space_change``: what Optuna can take)."""
    import optuna

    from affinity.search.space_change import check_space_change, model_document

    wanted: list[Any] = directions(settings.objective)
    meta = {
        "objective": settings.objective,
        "sampler": settings.sampler,  # as created (a resume may pass another: not checked)
        "training": settings.training(),
        "space": space.name,
        "model": model_document(space),
    }
    if name in study_names(storage):
        study = optuna.load_study(study_name=name, storage=storage)
        got = [d.name.lower() for d in study.directions]
        if got != wanted:
            raise StudyError(
                f"study {name!r} exists with directions {got} but --objective {settings.objective} "
                f"wants {wanted}; allowed: the same objective, or a new --study NAME"
            )
        stored_meta = study.user_attrs.get("affinity", {})
        stored = stored_meta.get("training")
        if stored is not None:
            # a study recorded before a budget key existed ran with that key's default
            stored = {**type(settings)().training(), **stored}
            diff = [
                f"{k}: {stored.get(k)!r} -> {v!r}"
                for k, v in settings.training().items()
                if stored.get(k) != v
            ]
            if diff:
                raise StudyError(
                    f"study {name!r} was trained with other settings ({'; '.join(diff)}); its accuracies "
                    "would not compare. Allowed: the same settings, or a new --study NAME"
                )
        document = check_space_change(study, space, allow=allow_space_change)
        if document is not None:
            study.set_user_attr("affinity", {**study.user_attrs.get("affinity", {}), "model": document})
        return study
    study = optuna.create_study(study_name=name, storage=storage, directions=wanted, load_if_exists=True)
    study.set_user_attr("affinity", meta)
    study.set_metric_names(metric_names(settings.objective))
    for params in settings.enqueue:  # known designs first (WAITING: the next asks take them)
        study.enqueue_trial(params, user_attrs={"enqueued": True})
    return study


class _GridSampler:
    """Optuna's GridSampler without its ``study.stop()`` at exhaustion, which only works inside
    ``optimize``; the workers here ask and tell, and cap n_trials at the grid size themselves."""

    def __new__(cls, search_space: dict[str, list[Any]], seed: int) -> Any:
        from optuna.samplers import GridSampler

        class Grid(GridSampler):
            def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
                return None

        return Grid(search_space, seed=seed)


def grid_space(space: Space) -> dict[str, list[Any]]:
    """The grid of a fully discrete space; a SpaceError naming the first continuous parameter."""
    grid: dict[str, list[Any]] = {}
    for name, values in space.distributions().items():
        if values is None:
            raise SpaceError(
                f"{name}: a float range without a step, or a range of over 100000 values; allowed with "
                "--sampler grid: choices, int ranges or float ranges with a step (or use tpe, nsga2, "
                "random, qmc)"
            )
        grid[name] = values
    return grid


def grid_size(space: Space) -> int:
    size = 1
    for values in grid_space(space).values():
        size *= len(values)
    return size


def make_sampler(
    settings: Settings,
    space: Space,
    *,
    seed: int,
    accepts: Callable[[dict[str, Any]], bool] | None = None,
    lag: int = 1,
) -> Any:
    """The sampler named by ``settings.sampler``, seeded with ``seed`` (``lag``: ehvi's).

    TPE is multivariate with ``group=True`` (the space is conditional: a shift's parameters
    exist only in trials that chose a shift) and a constant liar (several workers). ``ehvi``
    (``affinity.search.ehvi``) lists the space's configurations and proposes only those
    ``accepts(parameters)`` takes (all when None), within ``max_gflops`` and ``max_params``
    first.
    """
    import optuna

    name = settings.sampler
    if name == "tpe":
        return optuna.samplers.TPESampler(
            seed=seed,
            multivariate=True,
            group=True,
            constant_liar=True,
            n_startup_trials=max(2, min(10, settings.n_trials // 3)),
        )
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(
            seed=seed, population_size=max(4, min(50, settings.n_trials // 4))
        )
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "grid":
        return _GridSampler(grid_space(space), seed)
    if name == "qmc":
        return optuna.samplers.QMCSampler(
            seed=seed, scramble=True, warn_independent_sampling=False, warn_asynchronous_seeding=False
        )
    if name == "ehvi":
        from affinity.search.ehvi import EhviSampler

        listed = listed_configurations(space, settings.img_size)
        if listed is None:
            raise SpaceError(unlisted(space))
        bounds = {"gflops": settings.max_gflops, "params_m": settings.max_params}
        limits = {key: limit for key, limit in bounds.items() if limit is not None}
        return EhviSampler(listed, seed=seed, accepts=accepts, lag=lag, limits=limits)
    raise SpaceError(f"--sampler: {name!r} is not allowed; allowed: {', '.join(SAMPLERS)}")


def make_pruner(settings: Settings) -> Any:
    """Median or Hyperband on the per-epoch val accuracy (single objective only)."""
    import optuna

    if settings.objective != "accuracy" or settings.pruner == "none":
        return optuna.pruners.NopPruner()
    if settings.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(1, settings.budget.epochs))
    return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=0)


def distinct_configurations(space: Space, img_size: int, limit: int) -> int | None:
    """How many distinct configurations (canonical ``config_hash``) the space holds, counted
    up to ``limit`` (enough to know it holds at least that many); None when it cannot be
    counted: a continuous parameter, or more parameter sets than ``_dry.CENSUS_LIMIT``."""
    from affinity.search._dry import census

    found = census(space, img_size, stop_at=limit)
    if found.continuous or found.points is None:
        return None
    return len(found.configs)


def listed_configurations(space: Space, img_size: int) -> dict[str, dict[str, Any]] | None:
    """``config hash -> the parameters a trial suggests for it`` of every distinct
    configuration of ``space`` (canonical ``config_hash``), in the census's order; None when
    they cannot be listed (a continuous parameter, or more parameter sets than
    ``_dry.CENSUS_LIMIT``). Parameter sets refused as a configuration are not listed; those
    refused only by a forward pass (reflect padding wider than a map) are."""
    from affinity.search._dry import census

    if any(values is None for values in space.distributions().values()):
        return None  # continuous: not worth walking
    key = (id(space), img_size)
    if key not in _LISTED:  # the command checks, then its in-process worker's sampler lists
        found = census(space, img_size)
        listed = None if found.points is None else {d: p for d, (p, _) in found.configs.items()}
        _LISTED[key] = (space, listed)  # the space kept alive: its id stays its own
    return _LISTED[key][1]


#: ``listed_configurations``' walks, by (id of the space, image size)
_LISTED: dict[tuple[int, int], tuple[Space, dict[str, dict[str, Any]] | None]] = {}


def unlisted(space: Space) -> str:
    """The one line refusing ``--sampler ehvi`` on a space whose configurations cannot be listed."""
    from affinity.search._dry import CENSUS_LIMIT

    return (
        f"--sampler ehvi: {space.source or space.name} has configurations that cannot be listed (allowed: "
        f"choices, int ranges and float ranges with a step, at most {CENSUS_LIMIT} parameter sets); use tpe"
    )


def configurations(space: Space, img_size: int, *, seed: int | None = None) -> list[dict[str, Any]] | None:
    """The space's distinct configurations (``listed_configurations``), each as the
    parameters a trial suggests for it, in the census's order or, with ``seed``, a seeded
    random order; None when they cannot be listed."""
    import random

    listed = listed_configurations(space, img_size)
    if listed is None:
        return None
    params = list(listed.values())
    if seed is not None:
        random.Random(seed).shuffle(params)
    return params


def duplicates(trials: list[Any]) -> int:
    """How many finished trials were duplicate proposals (not counted towards n_trials)."""
    return sum(1 for t in trials if t.user_attrs.get("status") == "duplicate")


def counted(trials: list[Any]) -> tuple[int, int]:
    """(finished trials that count towards n_trials, trials running now)."""
    from optuna.trial import TrialState

    done = sum(
        1
        for t in trials
        if t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
        and t.user_attrs.get("status") not in NOT_COUNTED
    )
    running = sum(1 for t in trials if t.state == TrialState.RUNNING)
    return done, running


def requeue(study: optuna.Study, number: int) -> None:
    """Queue interrupted trial ``number``'s configuration (its parameters so far) to be
    evaluated again: the next ``study.ask()`` takes it. WAITING trials are queued work, not
    counted. The parameters are read back from the storage: a Ctrl-C inside ``suggest_*``
    can land after the storage recorded a parameter and before the live trial cached it. A
    queued trial cut off before sampling has no parameters yet: its queued ones are kept."""
    (trial,) = [t for t in study.get_trials(deepcopy=False) if t.number == number]
    first = trial.user_attrs.get("retry_of", trial.number)
    params = {**trial.system_attrs.get("fixed_params", {}), **trial.params}
    study.enqueue_trial(params, user_attrs={"retry_of": first})


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def reap_stale(study: optuna.Study) -> int:
    """Mark the RUNNING trials of dead workers FAIL/interrupted and queue their configurations
    to be evaluated again; returns how many this call reaped.

    A worker is dead when, on this machine, its PID is gone, or, on any machine, its trial's
    heartbeat is older than the storage's grace period (an RDB storage opened with
    ``heartbeat``; see ``open_storage``), or its trial has no PID at all (it died between
    asking and recording it). Call it under ``storages.ask_lock``. Two workers reaping at
    once reap each trial once.
    """
    from optuna.trial import TrialState

    from affinity.search._storage import fail_running, heartbeat_stale, trial_id

    stale = set(heartbeat_stale(study))
    reaped = 0
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        pid = t.user_attrs.get("pid")
        if trial_id(t) in stale:
            reason = "its worker stopped sending heartbeats (killed, or cut off from the database)"
        elif "pid" not in t.user_attrs:
            # asks and their host/pid attributes are written under the ask lock, which the
            # caller holds: a trial without them is one whose worker died while asking
            reason = "its worker died while asking for it"
        elif t.user_attrs.get("host") == HOST and isinstance(pid, int) and not _alive(pid):
            reason = "its worker process died"
        else:
            continue
        if fail_running(study, trial_id(t), {"status": "interrupted", "reason": reason}):
            requeue(study, t.number)
            reaped += 1
    return reaped
