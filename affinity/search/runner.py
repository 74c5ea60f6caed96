"""Running a search: the worker loop (ask, evaluate, tell), worker processes, live display.

Each worker, in this process or in a spawned one, opens the same storage and loops: under a
file lock it reaps dead workers' trials, counts, and asks for a trial only while the study
holds fewer than ``n_trials`` (finished + running), so several workers together finish with
exactly ``n_trials`` trials; then it evaluates the trial without the lock and tells the
study. Ctrl-C marks the running trial FAIL/interrupted (it is run again on resume) and
stops; the leaderboard is rewritten after every trial and once more at the end.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from affinity.errors import AffinityError
from affinity.search._interrupts import Interrupts
from affinity.search.objective import Outcome

if TYPE_CHECKING:
    import optuna

    from affinity.search.space import Settings, Space

__all__ = ["RunSpec", "Summary", "run_search"]


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


@dataclass
class Summary:
    """The live state the display shows (updated after each trial and epoch)."""

    target: int
    done_before: int
    done: int = 0
    running: int = 0
    best_acc: float | None = None
    front: int = 0
    started: float = field(default_factory=time.monotonic)
    current: str = ""

    def remaining_s(self) -> float | None:
        new = self.done - self.done_before
        if new <= 0:
            return None
        return (time.monotonic() - self.started) / new * max(0, self.target - self.done)


def _quiet_optuna() -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", module="optuna")


def _open(spec: RunSpec) -> optuna.Study:
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


def _tell(study: optuna.Study, trial: optuna.Trial, outcome: Outcome) -> None:
    from optuna.trial import TrialState

    for key, value in outcome.attrs.items():
        trial.set_user_attr(key, value)
    values = outcome.values if outcome.state == "COMPLETE" else None
    study.tell(trial, values=values, state=TrialState[outcome.state])


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
    import optuna
    import torch

    from affinity.data import load_dataset
    from affinity.search.study import make_pruner, make_sampler, requeue

    _quiet_optuna()
    torch.set_num_threads(spec.threads)
    s = spec.settings
    data = load_dataset(s.dataset, img_size=s.img_size, seed=s.seed)
    base = _open(spec)
    existing = len(base.get_trials(deepcopy=False))
    # a resumed or parallel run must not replay the same proposals: mix in the trial count
    sampler = make_sampler(s, spec.space, seed=s.seed * 1_000_003 + existing * 7919 + worker)
    study = optuna.load_study(
        study_name=spec.study, storage=base._storage, sampler=sampler, pruner=make_pruner(s)
    )
    ran = 0
    with Interrupts() as interrupts:
        while True:
            trial: optuna.Trial | None = None
            told = False
            try:
                with interrupts.held():
                    trial = _ask(study, spec, worker)
                    if trial is not None and on_phase is not None:
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
                    _tell(study, trial, outcome)
                    told = True
                if bug is not None:
                    raise bug
            except KeyboardInterrupt:
                if trial is not None and not told:
                    with interrupts.held():
                        _tell(study, trial, INTERRUPTED)
                        requeue(study, trial.number)
                raise
            ran += 1
            if on_phase is not None:
                on_phase("leaderboard", number)
            if on_trial is not None:
                on_trial(study)
            interrupts.raise_pending()
    return ran


def _spawned_worker(spec: RunSpec, worker: int) -> None:
    """Entry point of a spawned worker process: Ctrl-C ends it quietly (the parent reports)."""
    import sys

    try:
        worker_loop(spec, worker)
    except KeyboardInterrupt:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent may pass on a second one
        sys.exit(130)
    except AffinityError as exc:
        print(f"affinity: worker {worker}: error: {exc}", file=sys.stderr)
        sys.exit(2)


def _summarise(study: optuna.Study, summary: Summary) -> None:
    from affinity.search.leaderboard import build_leaderboard
    from affinity.search.study import counted

    trials = study.get_trials(deepcopy=False)
    summary.done, summary.running = counted(trials)
    board = build_leaderboard(study)
    accs = board.loc[board["state"] == "COMPLETE", "val_acc"].dropna()
    summary.best_acc = float(accs.max()) if len(accs) else None
    summary.front = int(((board["pareto_rank"] == 1) & (board["status"] != "duplicate")).sum())


class _Display:
    """The live line: trial n of N, best accuracy, front size, elapsed and remaining time."""

    def __init__(self, summary: Summary, name: str, enabled: bool) -> None:
        self.summary = summary
        self.name = name
        self.enabled = enabled
        self.live: Any = None

    def __enter__(self) -> _Display:
        if self.enabled:
            from rich.console import Console
            from rich.live import Live

            self.live = Live(self, console=Console(stderr=True), refresh_per_second=2, transient=True)
            self.live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.live is not None:
            self.live.__exit__(*exc)

    def __rich__(self) -> Any:
        from rich.text import Text

        s = self.summary
        elapsed = time.monotonic() - s.started
        rem = s.remaining_s()
        best = "-" if s.best_acc is None else f"{s.best_acc:.4f}"
        text = Text()
        text.append(f"{self.name}: ", style="bold")
        text.append(f"trial {min(s.done + 1, s.target)} of {s.target}")
        text.append(f" · best acc {best} · front {s.front} · elapsed {_hms(elapsed)}")
        text.append(f" · remaining {'~' + _hms(rem) if rem is not None else '-'}")
        if s.running > 1:
            text.append(f" · {s.running} running")
        if s.current:
            text.append(f"\n  {s.current}", style="dim")
        return text


def _hms(seconds: float) -> str:
    seconds = round(seconds)
    h, rest = divmod(seconds, 3600)
    m, sec = divmod(rest, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"


def run_search(
    spec: RunSpec, *, n_jobs: int, progress: bool, on_phase: PhaseHook | None = None
) -> tuple[optuna.Study, Any, Summary]:
    """Run the workers until the study holds ``spec.target`` trials.

    One worker runs in this process; more are spawned processes (``multiprocessing`` spawn),
    each opening the same storage while this process refreshes the display and rewrites the
    leaderboard as trials finish.

    ``on_phase`` sees the phases of the trials run in this process (``PHASES``).

    Returns:
        The study, the final leaderboard (a DataFrame) and the run summary.
    """
    from affinity.search.leaderboard import write_outputs
    from affinity.search.study import counted

    _quiet_optuna()
    study = _open(spec)
    done, _ = counted(study.get_trials(deepcopy=False))
    summary = Summary(target=spec.target, done_before=done)
    _summarise(study, summary)

    def after_trial(st: optuna.Study) -> None:
        write_outputs(st, spec.folder)
        _summarise(st, summary)
        summary.current = ""

    try:
        with _Display(summary, spec.study, progress):
            if n_jobs == 1:

                def on_epoch(n: int, epoch: int, epochs: int, acc: float) -> None:
                    summary.current = f"trial {n}: epoch {epoch}/{epochs}, val acc {acc:.4f}"

                def on_start(n: int) -> None:
                    summary.current = f"trial {n}: costing and training"

                worker_loop(
                    spec, 0, on_trial=after_trial, on_epoch=on_epoch, on_start=on_start, on_phase=on_phase
                )
            else:
                _run_processes(spec, n_jobs, study, after_trial, summary)
    finally:
        board = write_outputs(study, spec.folder)
        _summarise(study, summary)
    return study, board, summary


def _run_processes(
    spec: RunSpec, n_jobs: int, study: optuna.Study, after_trial: Callable[[Any], None], summary: Summary
) -> None:
    from affinity.errors import StudyError
    from affinity.search.study import counted

    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_spawned_worker, args=(spec, i), daemon=False) for i in range(n_jobs)]
    for p in procs:
        p.start()
    seen = -1
    try:
        while any(p.is_alive() for p in procs):
            time.sleep(0.5)
            done, running = counted(study.get_trials(deepcopy=False))
            summary.running = running
            if done != seen:
                seen = done
                after_trial(study)
    except KeyboardInterrupt:
        # a terminal's Ctrl-C reaches the workers too; a signal sent to this process alone
        # is passed on, so each worker records its running trial as interrupted
        time.sleep(0.2)
        for p in procs:
            if p.is_alive() and p.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p.pid, signal.SIGINT)
        for p in procs:
            p.join(timeout=60)
        raise
    finally:
        for p in procs:
            p.join()
    codes = [p.exitcode for p in procs]
    if any(c == 130 for c in codes):
        raise KeyboardInterrupt
    bad = [(i, c) for i, c in enumerate(codes) if c not in (0, None)]
    if bad:
        raise StudyError(f"worker {bad[0][0]} exited with code {bad[0][1]} (its message is above)")
