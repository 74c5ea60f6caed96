"""Running a search: the workers (one here, more as worker processes), Ctrl-C passed on to
them, and the live display; the per-trial loop itself is ``_worker.worker_loop``.

The leaderboard is rewritten after every finished trial and once more at the end, however
the run ends.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from affinity._progress import Mode
from affinity.errors import AffinityError
from affinity.search._display import Display, Summary, summarise
from affinity.search._worker import (
    PHASES,
    PhaseHook,
    RunSpec,
    open_study,
    proposal_lag,
    quiet_optuna,
    worker_loop,
)

if TYPE_CHECKING:
    import optuna

__all__ = ["PHASES", "RunSpec", "Summary", "proposal_lag", "quiet_optuna", "run_search"]


#: what a worker process imports before and during its first trial: loaded once, in the
#: ``multiprocessing`` fork server the workers are forked from, instead of in each worker
#: (N imports of torch competing for the cores) and inside its first trial
WORKER_IMPORTS = (
    "torch",
    "numpy",
    "optuna",
    "sqlalchemy",
    "psycopg",  # PostgreSQL's driver where installed (a missing one is skipped)
    "fvcore.nn",
    "affinity.data",
    "affinity.flops",
    "affinity.train",
    "affinity.search._worker",
    "affinity.search._storage",
    "affinity.search.objective",
    "affinity.search.space",
    "affinity.search.storages",
    "affinity.search.study",
)


def _context() -> Any:
    """Where worker processes come from: a fork server that imported ``WORKER_IMPORTS``
    (forked from a process that touched no thread pool, database or terminal), or plain
    spawn where there is none (Windows)."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(list(WORKER_IMPORTS))
    return ctx


#: the environment the running fork server was started in (None: none runs): its workers
#: see that one, not this process's (``$AFFINITY_HOST``, ``$AFFINITY_DATA`` and the like)
_server_environ: dict[str, str] | None = None


def preload_workers(n_jobs: int) -> None:
    """With ``n_jobs`` > 1, start the workers' fork server now, so that its imports load in
    the background while the command validates its input; ``run_search`` forks from it. A
    command that stops earlier leaves it to exit with this process."""
    if n_jobs > 1 and "forkserver" in multiprocessing.get_all_start_methods():
        _fork_server()


def _fork_server() -> None:
    """Make sure a fork server started in this process's present environment runs."""
    global _server_environ
    from multiprocessing import forkserver

    if _server_environ != dict(os.environ):
        _stop_fork_server()
    _context()
    forkserver.ensure_running()
    _server_environ = dict(os.environ)


def _stop_fork_server() -> None:
    global _server_environ
    from multiprocessing import forkserver

    with contextlib.suppress(OSError):  # already gone
        forkserver._forkserver._stop()  # type: ignore[attr-defined]  # CPython's, "used by unit tests"
    _server_environ = None


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


def run_search(
    spec: RunSpec, *, n_jobs: int, progress: Mode | bool, on_phase: PhaseHook | None = None
) -> tuple[optuna.Study, Any, Summary]:
    """Run the workers until the study holds ``spec.target`` trials.

    One worker runs in this process; more are processes forked from a server that loaded their
    imports once (``multiprocessing`` forkserver; ``WORKER_IMPORTS``),
    each opening the same storage while this process refreshes the display and rewrites the
    leaderboard as trials finish.

    ``progress`` is a display mode (``affinity._progress``: live, lines, off); True and False
    mean live and off. ``on_phase`` sees the phases of the trials run in this process (``PHASES``).

    Returns:
        The study, the final leaderboard (a DataFrame) and the run summary.
    """
    from affinity.search.leaderboard import write_outputs
    from affinity.search.storages import connection_errors, storage_errors
    from affinity.search.study import counted

    quiet_optuna()
    with storage_errors(spec.storage):
        study = open_study(spec)
        done, _ = counted(study.get_trials(deepcopy=False))
        summary = Summary(target=spec.target, done_before=done)
        summarise(study, summary)

    mode: Mode = ("live" if progress else "off") if isinstance(progress, bool) else progress
    display = Display(summary, spec.study, mode)

    def after_trial(st: optuna.Study) -> None:
        summarise(st, summary, write_outputs(st, spec.folder))
        summary.current = ""
        display.trial_finished()

    try:
        with storage_errors(spec.storage), display:
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
    except BaseException:
        # however the run ended, the outputs show every trial; a database that is gone
        # leaves the last ones written, and the run's own error is the one reported
        with contextlib.suppress(*connection_errors()):
            write_outputs(study, spec.folder)
        raise
    with storage_errors(spec.storage):
        board = write_outputs(study, spec.folder)
        summarise(study, summary, board)
    return study, board, summary


def _run_processes(
    spec: RunSpec, n_jobs: int, study: optuna.Study, after_trial: Callable[[Any], None], summary: Summary
) -> None:
    from affinity.errors import StudyError
    from affinity.search._storage import reset_session
    from affinity.search.storages import connection_errors
    from affinity.search.study import counted

    ctx = _context()
    forked = isinstance(ctx, multiprocessing.context.ForkServerContext)
    if forked:
        _fork_server()
    procs = [ctx.Process(target=_spawned_worker, args=(spec, i), daemon=False) for i in range(n_jobs)]
    for p in procs:
        p.start()
    seen = -1
    try:
        while any(p.is_alive() for p in procs):
            time.sleep(0.5)
            try:
                done, running = counted(study.get_trials(deepcopy=False))
                summary.running = running
                if done != seen:
                    seen = done
                    after_trial(study)
            except connection_errors():  # the workers report a lost database; poll again
                reset_session(study)
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
        if forked:  # no process left behind; the next run starts its own
            _stop_fork_server()
    codes = [p.exitcode for p in procs]
    if any(c == 130 for c in codes):
        raise KeyboardInterrupt
    bad = [(i, c) for i, c in enumerate(codes) if c not in (0, None)]
    if not bad:
        return
    worker, code = bad[0]
    if code is not None and code < 0:  # killed (OOM killer, kill -9): its trial was reaped
        done, _ = counted(study.get_trials(deepcopy=False))
        if done >= spec.target:
            print(f"affinity: note: worker {worker} was killed (signal {-code}); the others ran its trial "
                  "again", file=sys.stderr)  # fmt: skip
            return
        raise StudyError(f"worker {worker} was killed (signal {-code}); run the same command again to resume")
    raise StudyError(f"worker {worker} exited with code {code} (its message is above)")
