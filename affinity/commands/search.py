"""``affinity search --space shifts.yaml``: an Optuna study over token-mixer designs."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import click

from affinity.commands._options import device_option, out_option, quiet_option, storage_option, train_options
from affinity.search.settings import FIDELITIES, OBJECTIVES, PRUNERS, SAMPLERS


@click.command("search")
@click.option(
    "--space", "space_name", required=True, help="A space file, or a shipped one (shifts.yaml, ...)."
)
@click.option("--study", default=None, help="Study name (default: the space's name). Same name: resume.")
@out_option("Results root: the study is OUT/STUDY/.")
@storage_option
@click.option(
    "--heartbeat",
    type=click.IntRange(min=1),
    default=None,
    help="Seconds between a running trial's heartbeats on a database storage (default 30); "
    "a trial silent for twice that is failed as interrupted and run again.",
)
@click.option(
    "--devices",
    default=None,
    help="Comma-separated devices for the worker processes, round-robin (cuda:0,cuda:1).",
)
@click.option(
    "--n-trials", type=int, default=None, help="Total trials the study should hold (resume runs the rest)."
)
@click.option(
    "--n-jobs",
    default=None,
    metavar="N|auto",
    callback=lambda ctx, param, value: _int_or_text(value),
    help="Worker processes, or auto: one per CPU core (up to 4 per GPU on GPUs; at most n_trials). "
    "Default: the space's search.n_jobs (1 where it names none; shifts.yaml: 2).",
)
@click.option("--repeats", type=int, default=None,
              help="Training seeds per new configuration; val_acc is their mean (default 1).")  # fmt: skip
@click.option("--sampler", type=click.Choice(SAMPLERS), default=None,
              help="Default: the space's (tpe where it names none). ehvi: spaces whose configurations "
                   "can be listed, never repeats one.")  # fmt: skip
@click.option("--objective", type=click.Choice(OBJECTIVES), default=None,
              help="pareto: max accuracy and min GFLOPs; accuracy: one objective, with pruning.")  # fmt: skip
@click.option("--pruner", type=click.Choice(PRUNERS), default=None,
              help="Pruner for --objective accuracy.")  # fmt: skip
@click.option(
    "--fidelity",
    type=click.Choice(FIDELITIES),
    default=None,
    help="asha: a trial continues past each rung only while in the best 1/eta of the trials that "
    "reached it (MO-ASHA, by Pareto rank of val accuracy and GFLOPs); default none.",
)
@click.option(
    "--rungs",
    default=None,
    metavar="E1,E2,...",
    help="With --fidelity asha: the epochs a trial is judged at (default: the epochs divided by "
    "powers of eta); the full budget (--epochs) is the last rung.",
)
@click.option("--eta", type=int, default=None, help="With --fidelity asha: 1 in eta continues (default 3).")
@click.option(
    "--prescreen",
    type=int,
    default=None,
    metavar="K",
    help="Score K proposals per trained trial with --proxy (no training) and train the best; the "
    "others are recorded as proxy_only (not counted in --n-trials). Default 1: off.",
)
@click.option("--proxy", default=None, help="The zero-cost proxy of --prescreen (default naswot).")
@click.option(
    "--timeout",
    type=float,
    default=None,
    metavar="SECONDS",
    help="Start no new trial after this many seconds (running trials finish).",
)
@click.option(
    "--max-gflops", type=float, default=None, help="Over this (fvcore), a candidate is never trained."
)
@click.option("--max-params", type=float, default=None, help="Over this many million parameters, likewise.")
@click.option("--dataset", default=None, help="Dataset spec (digits, synthetic, npz:PATH, ...).")
@click.option("--img-size", type=int, default=None)
@train_options("epochs", "max_steps", "batch_size", "lr", "seed", default="the space file's")
@click.option(
    "--threads",
    type=int,
    default=None,
    help="Torch CPU threads per worker (default 1; use --n-jobs to scale).",
)
@click.option(
    "--allow-space-change",
    is_flag=True,
    help="Resume the study with an edited space (only changes Optuna can take: not a parameter's choices).",
)
@click.option(
    "--check",
    is_flag=True,
    help="Validate the space, print what it searches and how many distinct configurations it holds; "
    "write and run nothing.",
)
@click.option(
    "--estimate",
    is_flag=True,
    help="With --check: time one trial of the cheapest and one of the dearest configuration (by FLOPs) "
    "and estimate the search's run time.",
)
@device_option
@quiet_option
def command(
    space_name: str,
    study: str | None,
    out: str,
    storage: str | None,
    heartbeat: int | None,
    devices: str | None,
    threads: int | None,
    check: bool,
    estimate: bool,
    allow_space_change: bool,
    device: str,
    quiet: bool,
    **overrides: Any,
) -> None:
    """Run an Optuna study over token-mixer designs, ranked by accuracy and FLOPs.

    Every candidate is built from the space, costed with fvcore (before training; over a
    --max-gflops/--max-params budget it is recorded and never trained), trained briefly and
    written to OUT/STUDY/leaderboard.csv with its Pareto rank; the front's model configs go
    to OUT/STUDY/front/. Running the same command again resumes the study. FLOPs are
    fvcore's: one multiply-add counts as one FLOP.
    """
    from affinity._console import console as make_console
    from affinity._progress import progress_mode
    from affinity.errors import SpaceError, StudyError, check_name
    from affinity.search.runner import quiet_optuna
    from affinity.search.space import check_space, load_space, with_overrides
    from affinity.search.study import distinct_configurations, grid_size, listed_configurations, unlisted

    quiet_optuna()
    if threads is not None and threads < 1:
        raise StudyError(f"--threads: {threads} is not allowed; allowed: an integer >= 1")
    if estimate and not check:
        raise StudyError("--estimate is allowed only with --check (it times trials, runs no search)")
    space = load_space(space_name)
    settings = with_overrides(space.settings, **overrides)
    if not check:  # several workers: their imports load while the rest is checked
        from affinity.search.devices import worker_count
        from affinity.search.runner import preload_workers

        preload_workers(worker_count(settings.n_jobs, ("cpu",), trials=settings.n_trials))
    if settings.img_size != space.settings.img_size:
        check_space(space, settings.img_size)
    target = settings.n_trials
    notes = []
    if settings.sampler == "ehvi" and listed_configurations(space, settings.img_size) is None:
        raise SpaceError(unlisted(space))
    if settings.sampler == "grid":
        size = grid_size(space)
        if size < target:
            notes.append(f"the grid has {size} points: n_trials {target} -> {size}")
            target = size
    if check:
        from affinity.search._dry import census

        found = census(space, settings.img_size)
        bounded = found.points is not None and not found.continuous
        distinct = len(found.configs) if bounded else None
    else:
        distinct = distinct_configurations(space, settings.img_size, limit=target)
    if distinct is not None and distinct < target:
        notes.append(
            f"the space holds {distinct} distinct configurations (equivalent ones merged): "
            f"n_trials {target} -> {distinct}"
        )
        target = distinct
    name = check_name("--study", study or space.name, StudyError)
    console = make_console()
    if check:
        say = functools.partial(console.print, markup=False, highlight=False, soft_wrap=True)
        say(f"space {space.name} ({space.source}): valid")
        for pname, values in space.distributions().items():
            say(f"  {pname}: {'continuous' if values is None else values}")
        say(found.line())
        for note in notes:
            say(f"note: {note}")
        if estimate:
            for line in _estimate(space, settings, found, target, device, devices, threads or 1, quiet):
                say(line)
        return
    from affinity.search.devices import worker_count, worker_devices

    devs = worker_devices(device, devices)
    n_jobs = worker_count(settings.n_jobs, devs, trials=target)
    # the data is loaded once here so a bad dataset fails before anything is written
    from affinity.data import load_dataset

    load_dataset(settings.dataset, img_size=settings.img_size, seed=settings.seed, quiet=quiet)

    from affinity._io import check_writable
    from affinity.commands._outputs import printed_if_unwritten
    from affinity.search.leaderboard import build_leaderboard, front_numbers
    from affinity.search.render import FRONT, leaderboard_table
    from affinity.search.runner import RunSpec, proposal_lag, run_search
    from affinity.search.storages import DEFAULT_HEARTBEAT, default_storage_path, open_storage
    from affinity.search.study import MAX_CONSECUTIVE_DUPLICATES, counted, create_or_resume

    folder = Path(out) / name
    check_writable(folder)
    if storage is not None and "://" not in storage:
        check_writable(Path(storage).parent)
    beat = heartbeat or DEFAULT_HEARTBEAT
    store = open_storage(storage, default_storage_path(out, name), create=True, heartbeat=beat)
    st = create_or_resume(name, store, space, settings, allow_space_change=allow_space_change)
    from affinity.search import provenance

    notes += [f"the study was started with {d}: accuracies may not match bit for bit"
              for d in provenance.record(st, ",".join(dict.fromkeys(devs)))]  # fmt: skip
    done, _ = counted(st.get_trials(deepcopy=False))
    # one thread per worker: small models gain nothing from more, and on a busy machine
    # threads spin against each other (20 s instead of 1 s a tiny trial); scale with --n-jobs
    threads = threads or 1
    import time

    deadline = None if settings.timeout is None else time.time() + settings.timeout
    lag = proposal_lag(settings, n_jobs)
    spec = RunSpec(space, settings, name, folder, storage, target, devs, threads, beat, deadline, lag)
    if not quiet:
        for note in notes:
            console.print(f"note: {note}", style="dim")
        if done >= target:
            console.print(f"study {name} already holds {done} trials (n_trials {target}): nothing to run")
        elif done:
            console.print(f"resuming study {name}: {done} trials done, {target - done} to run")
    # the trials are in the study's storage: a leaderboard that cannot be written is printed
    with printed_if_unwritten(folder, lambda: build_leaderboard(st).to_csv(index=False)):
        _save_space(space, folder)
        _, board, summary = run_search(spec, n_jobs=n_jobs, progress=progress_mode(quiet))
    if quiet:
        return
    console.print(
        f"{summary.done} distinct configurations evaluated (n_trials {target}); "
        f"{summary.duplicates} duplicate proposals reused an earlier result and did not count",
        highlight=False,
    )
    from affinity.search.timing import shares_line

    if (shares := shares_line(board)) is not None:
        console.print(shares, highlight=False)
    from affinity.search.fidelity import asha_line
    from affinity.search.prescreen import prescreen_line

    trials = st.get_trials(deepcopy=False)
    for cheap in (asha_line(trials, settings), prescreen_line(trials, settings)):
        if cheap is not None:
            console.print(cheap, highlight=False)
    if settings.objective == "pareto":
        from affinity.search.hypervolume import REF_MARGIN, study_hypervolume

        hv, ref = study_hypervolume(board)
        if ref is not None:
            console.print(
                f"hypervolume {hv:.5g} (reference point: val_acc 0, {ref:.4g} GFLOPs = "
                f"{REF_MARGIN} x the largest GFLOPs costed)",
                highlight=False,
            )
    if deadline is not None and summary.done < target and time.time() >= deadline:
        console.print(f"stopped early: --timeout {settings.timeout:g} s reached", highlight=False)
    elif summary.done < target:
        console.print(
            f"stopped early: the sampler proposed {MAX_CONSECUTIVE_DUPLICATES} already-evaluated "
            "configurations in a row (the space is nearly exhausted for it)",
            highlight=False,
        )
    front = board[board["number"].isin(front_numbers(board))]
    console.print(leaderboard_table(front, f"Pareto front of {name} (max val_acc, min GFLOPs)", main=FRONT))
    console.print(f"leaderboard: {folder / 'leaderboard.csv'} ({len(board)} trials)", highlight=False)
    console.print(
        f"front configs: {folder / 'front'}/trial_<n>.yaml (affinity profile / affinity train take them)"
    )


def _estimate(
    space: Any,
    settings: Any,
    found: Any,
    n_trials: int,
    device: str,
    devices: str | None,
    threads: int,
    quiet: bool,
) -> list[str]:
    """``--check --estimate``'s lines (see ``affinity.search._estimate``); nothing is written."""
    from affinity.data import load_dataset
    from affinity.search._estimate import estimate
    from affinity.search.devices import worker_count, worker_devices

    devs = worker_devices(device, devices)
    data = load_dataset(settings.dataset, img_size=settings.img_size, seed=settings.seed, quiet=quiet)
    n_jobs = worker_count(settings.n_jobs, devs, trials=n_trials)
    result = estimate(
        space, settings, found, data, n_trials=n_trials, n_jobs=n_jobs, device=devs[0], threads=threads
    )
    return result.lines()


def _int_or_text(value: str | None) -> int | str | None:
    """A command-line value as an int where it reads as one (``--n-jobs 2``), else as given
    (``auto``, or a word the setting's rule refuses with what is allowed)."""
    try:
        return None if value is None else int(value)
    except ValueError:
        return value


def _save_space(space: Any, folder: Path) -> None:
    """A copy of the space file beside the results (what was searched), written atomically."""
    from affinity._io import atomic_write_text

    if space.source and Path(space.source).is_file():
        atomic_write_text(folder / "space.yaml", Path(space.source).read_text(encoding="utf-8"))
