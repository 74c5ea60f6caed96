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
from affinity.search.timing import ATTR, PhaseClock, phases_hooked

if TYPE_CHECKING:
    import optuna

    from affinity.search.space import Settings, Space

__all__ = [
    "PHASES",
    "PhaseHook",
    "RunSpec",
    "open_study",
    "proposal_lag",
    "quiet_optuna",
    "settled",
    "worker_loop",
]


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
        devices: the devices of the worker processes, worker ``i`` on ``devices[i % len]``
            (``cpu``, ``cuda``, ``cuda:N``; see ``affinity.search.devices``).
        threads: torch threads per worker.
        heartbeat: seconds between a running trial's heartbeats on an RDB storage.
        deadline: ``time.time()`` after which no trial starts (``--timeout``); None: none.
        lag: above 1, trial k starts only once every trial numbered ``k - lag`` or below has
            finished, and ehvi proposes it from those alone (``affinity.search.ehvi``: the
            same proposals whichever trials finish first); see ``proposal_lag``.
    """

    space: Space
    settings: Settings
    study: str
    folder: Path
    storage: str | None
    target: int
    devices: tuple[str, ...]
    threads: int
    heartbeat: int | None = None
    deadline: float | None = None
    lag: int = 1

    def device(self, worker: int) -> str:
        return self.devices[worker % len(self.devices)]

    @property
    def lock(self) -> Path:
        return self.folder / ".ask.lock"


def quiet_optuna() -> None:
    import optuna

    # ERROR: what Optuna warns of (a lost connection it retried) the workers handle and report
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", module="optuna")


def open_study(spec: RunSpec) -> optuna.Study:
    import optuna

    from affinity.search.storages import default_storage_path, open_storage

    path = default_storage_path(spec.folder.parent, spec.study)
    storage = open_storage(spec.storage, path, create=False, heartbeat=spec.heartbeat)
    return optuna.load_study(study_name=spec.study, storage=storage)


#: the phases of a trial, in order, as ``on_phase`` names them (tests interrupt at each)
PHASES = phases_hooked()
INTERRUPTED = Outcome("FAIL", None, {"status": "interrupted", "reason": "interrupted (Ctrl-C)"})
#: ``on_phase(phase, trial_number)``: called as each phase of a trial starts
PhaseHook = Callable[[str, int], None]


#: what ``_ask`` returns instead of a trial: the study is complete / full while trials run
DONE, WAIT = "done", "wait"


def _ask(study: optuna.Study, spec: RunSpec, worker: int) -> optuna.Trial | str:
    """Under the study's ask lock: reap dead workers' trials, then a new trial; ``DONE`` once
    the study holds ``spec.target`` finished trials, ``WAIT`` while it is full but some of
    its running trials may still turn out dead and be queued again (a heartbeat storage, or
    trials of this machine), so that the study ends with exactly its target."""
    import time

    from optuna.trial import TrialState

    from affinity.search._storage import heartbeat_enabled
    from affinity.search.storages import ask_lock
    from affinity.search.study import HOST, counted, reap_stale

    with ask_lock(spec.storage, spec.study, spec.lock):
        reap_stale(study)
        trials = study.get_trials(deepcopy=False)
        done, running = counted(trials)
        if done >= spec.target or (spec.deadline is not None and time.time() >= spec.deadline):
            return DONE
        if done + running >= spec.target:
            here = any(t.user_attrs.get("host") == HOST for t in trials if t.state == TrialState.RUNNING)
            return WAIT if here or heartbeat_enabled(study) else DONE
        if not settled(trials, spec.lag):
            return WAIT
        trial = _asked(study, worker)
    return trial


def proposal_lag(settings: Settings, n_jobs: int) -> int:
    """``RunSpec.lag`` for a search of ``n_jobs`` workers on one machine: ``2 * n_jobs`` where
    the proposals can be made independent of the order trials finish in (the ehvi sampler, no
    early stopping or pre-screening, which judge a trial by whatever else has finished), else
    1. Twice the workers: with ``n_jobs`` 2 a worker then rarely waits (``ehvi``'s docstring)."""
    deterministic = settings.sampler == "ehvi" and settings.fidelity == "none" and settings.prescreen == 1
    return 2 * n_jobs if n_jobs > 1 and deterministic else 1


def settled(trials: list[Any], lag: int) -> bool:
    """Whether the next trial may start: every trial numbered ``lag`` or more below it has
    finished. The next trial is the oldest waiting one (enqueued or queued again), else a
    new one numbered after all."""
    from optuna.trial import TrialState

    if lag <= 1:
        return True
    waiting = [t.number for t in trials if t.state == TrialState.WAITING]
    upto = (min(waiting) if waiting else len(trials)) - lag
    return all(t.state.is_finished() for t in trials if t.number <= upto)


def _asked(study: optuna.Study, worker: int) -> optuna.Trial:
    """A new trial marked as this worker's (host, PID: reaped if the worker dies); call it
    under the ask lock."""
    from affinity.search._storage import first_beat
    from affinity.search.study import HOST

    trial = study.ask()
    first_beat(study, trial)
    trial.set_user_attr("host", HOST)
    trial.set_user_attr("pid", os.getpid())
    trial.set_user_attr("worker", worker)
    return trial


def _ask_more(study: optuna.Study, spec: RunSpec, worker: int, n: int) -> list[optuna.Trial]:
    """``n`` more trials for ``--prescreen`` (not counted towards the target: the losers are
    proxy_only), asked under the ask lock."""
    from affinity.search.storages import ask_lock

    with ask_lock(spec.storage, spec.study, spec.lock):
        return [_asked(study, worker) for _ in range(n)]


def _tell(
    study: optuna.Study,
    spec: RunSpec,
    trial: optuna.Trial,
    outcome: Outcome,
    worker: int,
    clock: PhaseClock | None = None,
) -> bool:
    """Record the outcome (and the trial's phase times, when ``clock`` timed them); False when
    another worker had already failed the trial as stale (its heartbeat was late: this
    worker was stalled or cut off from the database) and queued its configuration again, so
    this result is dropped.

    Under the ask lock, which reaping holds too: a reap writes ``status: interrupted`` and
    then the FAIL state, a tell its own ``status`` and then its state; interleaved, a trial
    could end FAIL with ``status: ok`` (counted, and its configuration queued again: trained
    twice) or COMPLETE with ``status: interrupted`` (its result not counted)."""
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.trial import TrialState

    from affinity.search.storages import ask_lock

    try:
        with ask_lock(spec.storage, spec.study, spec.lock):
            stored = trial.user_attrs  # this process's copy: what the trial already wrote
            for key, value in outcome.attrs.items():
                if key not in stored or stored[key] != value:  # each write is a storage round trip
                    trial.set_user_attr(key, value)
            if clock is not None:
                clock.stop()
                trial.set_user_attr(ATTR, clock.record())
            values = outcome.values if outcome.state == "COMPLETE" else None
            study.tell(trial, values=values, state=TrialState[outcome.state])
    except UpdateFinishedTrialError:
        _reaped(worker, trial.number)
        return False
    return True


def _prescreened(
    study: optuna.Study, spec: RunSpec, worker: int, trial: optuna.Trial, data: Any
) -> optuna.Trial:
    """The trial to train among ``trial`` and its ``--prescreen`` rivals (``prescreen``)."""
    from affinity.search.prescreen import prescreen

    def tell(loser: optuna.Trial, attrs: dict[str, Any]) -> None:
        _tell(study, spec, loser, Outcome("PRUNED", None, attrs), worker)

    return prescreen(
        study,
        trial,
        spec.space,
        spec.settings,
        data,
        ask=lambda n: _ask_more(study, spec, worker, n),
        tell=tell,
    )


def _reaped(worker: int, number: int) -> None:
    import sys

    print(
        f"affinity: worker {worker}: trial {number} was failed as stale by another worker "
        "(its heartbeat was late); its configuration runs again",
        file=sys.stderr,
    )


#: seconds between looks at a study another worker may still finish: a configuration it
#: trains (``claim``), or a full study whose last trials run (not the heartbeat interval:
#: that is 30 s by default, and a worker slept that long after the study's last trial)
CLAIM_POLL_S = 0.5


def claim(study: optuna.Study, spec: RunSpec, trial: optuna.Trial, digest: str) -> Any:
    """Whether ``trial`` trains configuration ``digest``: the earlier finished trial that
    evaluated it (to copy, a duplicate), or None when ``trial`` is the one to train it.

    While another worker trains the same configuration this waits for its result: a trial is
    seeded by its configuration's hash, so a second training would give the same figures and
    count the configuration twice towards n_trials. The check and the claim (the ``claimed``
    attribute) happen under the study's ask lock, so two workers never both train it; a dead
    claimer's trial is reaped meanwhile, and then this trial trains it.
    """
    import time

    from optuna.trial import TrialState

    from affinity.search.objective import find_duplicate
    from affinity.search.storages import ask_lock
    from affinity.search.study import reap_stale

    while True:
        with ask_lock(spec.storage, spec.study, spec.lock):
            reap_stale(study)
            earlier = find_duplicate(study, trial.number, digest)
            if earlier is not None:
                return earlier
            running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
            if not any(t.number != trial.number and t.user_attrs.get("claimed") == digest for t in running):
                trial.set_user_attr("claimed", digest)
                return None
        time.sleep(CLAIM_POLL_S)


def _run_trial(
    trial: optuna.Trial,
    study: optuna.Study,
    spec: RunSpec,
    data: Any,
    device: str,
    on_epoch: Callable[[int, int, float], None] | None,
    on_phase: Callable[[str], None] | None,
    clock: PhaseClock,
) -> tuple[Outcome | None, BaseException | None]:
    """Evaluate the trial; every ending but Ctrl-C becomes an Outcome (a bug's exception is
    returned beside it, to be raised once the trial is told); None when another worker
    failed the trial as stale meanwhile (nothing is left to tell)."""
    import optuna
    from optuna.exceptions import UpdateFinishedTrialError

    from affinity.search.objective import evaluate
    from affinity.search.storages import connection_errors

    try:
        outcome = evaluate(
            trial, study, spec.space, spec.settings, data,
            device=device, threads=spec.threads, on_epoch=on_epoch, on_phase=on_phase, clock=clock,
            claim=lambda digest: claim(study, spec, trial, digest),
        )  # fmt: skip
    except UpdateFinishedTrialError:
        return None, None
    except optuna.TrialPruned:
        last = trial.user_attrs.get("epoch_acc") or [None]
        return Outcome("PRUNED", None, {"status": "pruned", "val_acc": last[-1]}), None
    except AffinityError as exc:
        return Outcome("FAIL", None, {"status": "rejected", "reason": str(exc)}), None
    except connection_errors():  # the database, not the trial: the worker stops (one line)
        raise
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
    """Ask, evaluate and tell until the study holds ``spec.target`` counted trials (duplicate
    proposals do not count), or until ``MAX_CONSECUTIVE_DUPLICATES`` proposals in a row were
    duplicates; returns how many trials this worker ran.

    Ctrl-C (``KeyboardInterrupt``) at any point leaves no trial RUNNING: a trial asked and
    not told is recorded FAIL/interrupted and its configuration queued to run again; then
    the interrupt is raised.
    """

    from affinity.search.storages import storage_errors

    with storage_errors(spec.storage):
        return _loop(spec, worker, on_trial, on_epoch, on_start, on_phase)


def _loop(
    spec: RunSpec,
    worker: int,
    on_trial: Callable[[optuna.Study], None] | None,
    on_epoch: Callable[[int, int, int, float], None] | None,
    on_start: Callable[[int], None] | None,
    on_phase: PhaseHook | None,
) -> int:
    import time

    import torch

    from affinity.data import load_dataset
    from affinity.search._storage import heartbeat, reset_session, same_storage
    from affinity.search.objective import model_accepts
    from affinity.search.storages import retrying
    from affinity.search.study import MAX_CONSECUTIVE_DUPLICATES, make_pruner, make_sampler, requeue

    quiet_optuna()
    torch.set_num_threads(spec.threads)
    device = spec.device(worker)
    s = spec.settings
    data = load_dataset(s.dataset, img_size=s.img_size, seed=s.seed)
    base = open_study(spec)
    existing = len(base.get_trials(deepcopy=False))
    # a resumed or parallel run must not replay the same proposals: mix in the trial count;
    # with a lag the proposals must not depend on the worker (ehvi draws per trial number)
    sampler = make_sampler(
        s,
        spec.space,
        seed=s.seed * 1_000_003 + (0 if spec.lag > 1 else existing * 7919 + worker),
        accepts=lambda params: model_accepts(spec.space, data, params),
        lag=spec.lag,
    )
    study = same_storage(base, sampler=sampler, pruner=make_pruner(s))

    def reset() -> None:
        reset_session(study)

    ran = 0
    streak = 0  # duplicate proposals in a row
    outputs_s = 0.0  # the leaderboard rewrite after the last trial, recorded on the next one
    with Interrupts() as interrupts:
        while True:
            trial: optuna.Trial | None = None
            told = False
            # the trial's heartbeat (RDB storages), beating until it is told: a tell waits for the
            # ask lock, and a trial silent meanwhile could be reaped as stale
            beat = contextlib.ExitStack()
            clock = PhaseClock()
            clock.add("leaderboard", outputs_s)
            try:
                with interrupts.held():
                    clock.start("ask")
                    asked = retrying(spec.storage, _ask, study, spec, worker, reset=reset)
                    if not isinstance(asked, str):
                        trial = asked
                        beat.enter_context(heartbeat(study, trial))
                        if on_phase is not None:
                            on_phase("ask", trial.number)
                if asked == DONE:
                    break
                if trial is None:  # WAIT: the study is full until a running trial ends or is reaped
                    time.sleep(CLAIM_POLL_S)
                    continue
                if s.prescreen > 1:
                    with interrupts.held():
                        trial = _prescreened(study, spec, worker, trial, data)
                        beat.close()  # the heartbeat follows the trial that trains
                        beat.enter_context(heartbeat(study, trial))
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

                outcome, bug = _run_trial(trial, study, spec, data, device, epoch_cb, phase_cb, clock)
                if outcome is None:
                    told = True
                    _reaped(worker, number)
                    continue
                with interrupts.held():
                    clock.start("tell")
                    if on_phase is not None:
                        on_phase("tell", number)
                    retrying(spec.storage, _tell, study, spec, trial, outcome, worker, clock, reset=reset)
                    told = True
                if bug is not None:
                    raise bug
            except KeyboardInterrupt:
                if trial is not None and not told:
                    with interrupts.held():
                        if _tell(study, spec, trial, INTERRUPTED, worker):
                            requeue(study, trial.number)
                raise
            finally:
                beat.close()
            ran += 1
            if on_phase is not None:
                on_phase("leaderboard", number)
            if on_trial is not None:
                start = time.perf_counter()
                on_trial(study)
                outputs_s = time.perf_counter() - start
            interrupts.raise_pending()
            streak = streak + 1 if outcome.attrs.get("status") == "duplicate" else 0
            if streak >= MAX_CONSECUTIVE_DUPLICATES:
                break
    return ran
