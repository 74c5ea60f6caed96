"""The per-trial loop of one worker: ask, evaluate, tell, until the study is full.

Each worker, in the search's own process or in a spawned one, opens the same storage and
loops: under the study's ask lock it reaps dead workers' trials, counts, and asks for a
trial only while the study holds fewer than its target (finished + running), so any number
of workers together finish with exactly ``n_trials`` trials; then it evaluates the trial
without the lock and tells the study. Ctrl-C at any point leaves no trial RUNNING (see
``_interrupts``).
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from affinity.errors import AffinityError
from affinity.search._interrupts import Interrupts
from affinity.search.objective import Outcome

if TYPE_CHECKING:
    import optuna

    from affinity.search.space import Settings, Space

__all__ = ["PHASES", "PhaseHook", "RunSpec", "open_study", "quiet_optuna", "worker_loop"]


@dataclass(frozen=True)
class RunSpec:
    """What every worker needs (picklable: it travels to spawned processes).

    Args:
        space: the validated space.
        settings: the space's settings with the command line applied.
        study: the study name.
        folder: ``<out>/<study>``, where outputs and the default journal live.
        storage: an Optuna storage URL, or None for the journal in ``folder``.
        target: the total number of trials the study should hold.
        device: ``cpu`` or ``cuda``.
        threads: torch threads per worker.
    """

    space: Space
    settings: Settings
    study: str
    folder: Path
    storage: str | None
    target: int
    device: str
    threads: int

    @property
    def lock(self) -> Path:
        return self.folder / ".ask.lock"


def quiet_optuna() -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", module="optuna")


def open_study(spec: RunSpec) -> optuna.Study:
    import optuna

    from affinity.search.study import default_storage_path, open_storage

    storage = open_storage(spec.storage, default_storage_path(spec.folder.parent, spec.study), create=False)
    return optuna.load_study(study_name=spec.study, storage=storage)


#: the phases of a trial, in order, as ``on_phase`` names them (tests interrupt at each)
PHASES = ("ask", "sample", "build", "flops", "train", "eval", "tell", "leaderboard")
INTERRUPTED = Outcome("FAIL", None, {"status": "interrupted", "reason": "interrupted (Ctrl-C)"})
#: ``on_phase(phase, trial_number)``: called as each phase of a trial starts
PhaseHook = Callable[[str, int], None]


def _ask(study: optuna.Study, spec: RunSpec, worker: int) -> optuna.Trial | None:
    """Under the machine's lock: reap dead workers' trials, then a new trial, or None when
    the study holds ``spec.target`` trials (finished + running)."""
    from affinity.search.study import HOST, counted, file_lock, reap_stale

    with file_lock(spec.lock):
        reap_stale(study)
        done, running = counted(study.get_trials(deepcopy=False))
        if done + running >= spec.target:
            return None
        trial = study.ask()
        trial.set_user_attr("host", HOST)
        trial.set_user_attr("pid", os.getpid())
        trial.set_user_attr("worker", worker)
    return trial


def _tell(study: optuna.Study, trial: optuna.Trial, outcome: Outcome, worker: int) -> bool:
    """Record the outcome; False when another worker had already failed the trial as stale
    (its heartbeat was late: this worker was stalled or cut off from the database) and
    queued its configuration again, so this result is dropped."""
    import sys

    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.trial import TrialState

    try:
        for key, value in outcome.attrs.items():
            trial.set_user_attr(key, value)
        values = outcome.values if outcome.state == "COMPLETE" else None
        study.tell(trial, values=values, state=TrialState[outcome.state])
    except UpdateFinishedTrialError:
        print(
            f"affinity: worker {worker}: trial {trial.number} was failed as stale by another worker "
            "(its heartbeat was late); its configuration runs again",
            file=sys.stderr,
        )
        return False
    return True


def _run_trial(
    trial: optuna.Trial,
    study: optuna.Study,
    spec: RunSpec,
    data: Any,
    on_epoch: Callable[[int, int, float], None] | None,
    on_phase: Callable[[str], None] | None,
) -> tuple[Outcome, BaseException | None]:
    """Evaluate the trial; every ending but Ctrl-C becomes an Outcome (a bug's exception is
    returned beside it, to be raised once the trial is told)."""
    import optuna

    from affinity.search.objective import evaluate

    try:
        outcome = evaluate(
            trial, study, spec.space, spec.settings, data,
            device=spec.device, threads=spec.threads, on_epoch=on_epoch, on_phase=on_phase,
        )  # fmt: skip
    except optuna.TrialPruned:
        last = trial.user_attrs.get("epoch_acc") or [None]
        return Outcome("PRUNED", None, {"status": "pruned", "val_acc": last[-1]}), None
    except AffinityError as exc:
        return Outcome("FAIL", None, {"status": "rejected", "reason": str(exc)}), None
    except Exception as exc:  # a bug: recorded so the leaderboard shows it, then raised
        return Outcome("FAIL", None, {"status": "error", "reason": f"{type(exc).__name__}: {exc}"}), exc
    return outcome, None


def worker_loop(
    spec: RunSpec,
    worker: int,
    *,
    on_trial: Callable[[optuna.Study], None] | None = None,
    on_epoch: Callable[[int, int, int, float], None] | None = None,
    on_start: Callable[[int], None] | None = None,
    on_phase: PhaseHook | None = None,
) -> int:
    """Ask, evaluate and tell until the study holds ``spec.target`` trials; returns how many
    trials this worker ran.

    Ctrl-C (``KeyboardInterrupt``) at any point leaves no trial RUNNING: a trial asked and
    not told is recorded FAIL/interrupted and its configuration queued to run again; then
    the interrupt is raised.
    """
    import torch

    from affinity.data import load_dataset
    from affinity.search._storage import heartbeat, same_storage
    from affinity.search.study import make_pruner, make_sampler, requeue

    quiet_optuna()
    torch.set_num_threads(spec.threads)
    s = spec.settings
    data = load_dataset(s.dataset, img_size=s.img_size, seed=s.seed)
    base = open_study(spec)
    existing = len(base.get_trials(deepcopy=False))
    # a resumed or parallel run must not replay the same proposals: mix in the trial count
    sampler = make_sampler(s, spec.space, seed=s.seed * 1_000_003 + existing * 7919 + worker)
    study = same_storage(base, sampler=sampler, pruner=make_pruner(s))
    ran = 0
    with Interrupts() as interrupts:
        while True:
            trial: optuna.Trial | None = None
            told = False
            beat = contextlib.ExitStack()  # the trial's heartbeat (RDB storages), stopped before telling
            try:
                with interrupts.held():
                    trial = _ask(study, spec, worker)
                    if trial is not None:
                        beat.enter_context(heartbeat(study, trial))
                        if on_phase is not None:
                            on_phase("ask", trial.number)
                if trial is None:
                    break
                number = trial.number
                if on_start is not None:
                    on_start(number)
                epoch_cb = None
                if on_epoch is not None:

                    def epoch_cb(epoch: int, epochs: int, acc: float, _n: int = number) -> None:
                        on_epoch(_n, epoch, epochs, acc)

                phase_cb = None
                if on_phase is not None:

                    def phase_cb(phase: str, _n: int = number) -> None:
                        on_phase(phase, _n)

                outcome, bug = _run_trial(trial, study, spec, data, epoch_cb, phase_cb)
                with interrupts.held():
                    if on_phase is not None:
                        on_phase("tell", number)
                    beat.close()
                    _tell(study, trial, outcome, worker)
                    told = True
                if bug is not None:
                    raise bug
            except KeyboardInterrupt:
                if trial is not None and not told:
                    with interrupts.held():
                        beat.close()
                        if _tell(study, trial, INTERRUPTED, worker):
                            requeue(study, trial.number)
                raise
            finally:
                beat.close()
            ran += 1
            if on_phase is not None:
                on_phase("leaderboard", number)
            if on_trial is not None:
                on_trial(study)
            interrupts.raise_pending()
    return ran
