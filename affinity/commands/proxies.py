"""``affinity proxies STUDY``: how well zero-cost proxies rank a study's trained designs."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

import click

from affinity.commands._options import format_option, out_option, quiet_option, storage_option

#: training batches fed to each proxy unless --batches says otherwise
DEFAULT_BATCHES = 2


@click.command("proxies")
@click.argument("study")
@click.option(
    "--proxies",
    "names",
    default=None,
    metavar="A,B",
    help="Comma-separated proxies to score (default: every registered one: synflow, naswot, "
    "grad_norm, snip, params, flops).",
)
@click.option(
    "--batches",
    type=click.IntRange(min=1),
    default=DEFAULT_BATCHES,
    show_default=True,
    help="Training batches (of the study's batch size) fed to each proxy.",
)
@format_option
@out_option("Results root: the study is OUT/STUDY/; files go to OUT/STUDY/proxies/.")
@storage_option
@quiet_option
def command(
    study: str, names: str | None, batches: int, fmt: str, out: str, storage: str | None, quiet: bool
) -> None:
    """Score every trained configuration of STUDY with zero-cost proxies and rank the proxies.

    Each trained trial (not the duplicates) is rebuilt untrained, from the trial's own seed,
    and fed the first batches its training drew; each proxy's score is then compared with
    the trial's trained val accuracy by Kendall's τ-b and Spearman's ρ (1: the proxy ranks
    the designs as training does; 0: no better than chance), and with the trial's
    hypervolume contribution (the area of the accuracy/GFLOPs front lost without it: what a
    Pareto study rewards; 0 for every dominated design).

    Writes OUT/STUDY/proxies/scores.csv (one row per trial), correlations.csv (one row per
    proxy) and proxy_NAME.png (accuracy against score). --format json prints
    {"study", "batches", "batch_size", "correlations", "trials"}.
    """
    import torch

    from affinity._io import check_writable
    from affinity._progress import progress_mode
    from affinity.errors import UnknownNameError, check_name
    from affinity.proxies import FOLDER, PROXIES, score_study, write_outputs
    from affinity.search.runner import quiet_optuna
    from affinity.search.study import load_study

    quiet_optuna()
    check_name("STUDY", study)
    wanted = PROXIES.names() if names is None else [n.strip() for n in names.split(",") if n.strip()]
    if not wanted:
        raise UnknownNameError(f"--proxies: {names!r} names no proxy; allowed: {', '.join(PROXIES.names())}")
    try:
        for name in wanted:
            PROXIES.get(name)
    except UnknownNameError as exc:
        raise UnknownNameError(f"--proxies: {exc}") from None
    st = load_study(study, storage, out=out)
    folder = check_writable(Path(out) / study / FOLDER)
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # as the search trains: small models gain nothing from more
    try:
        with _progress(progress_mode(quiet)) as on_trial:
            result = score_study(st, list(dict.fromkeys(wanted)), n_batches=batches, on_trial=on_trial)
    finally:
        torch.set_num_threads(before)
    write_outputs(result, folder)
    if fmt == "csv":
        click.echo(result.correlations.to_csv(index=False), nl=False)
    elif fmt == "json":
        import json

        doc = {
            "study": study,
            "batches": result.n_batches,
            "batch_size": result.batch_size,
            "correlations": json.loads(result.correlations.to_json(orient="records", double_precision=15)),
            "trials": json.loads(result.scores.to_json(orient="records", double_precision=15)),
        }
        click.echo(json.dumps(doc, indent=2))
    else:
        from affinity._console import console
        from affinity.proxies.render import correlation_table

        console().print(correlation_table(result, folder))


@contextlib.contextmanager
def _progress(mode: str) -> Iterator[Callable[[int, int, int], None] | None]:
    """A rich bar on a terminal, a timestamped line per trial when piped, nothing when off."""
    if mode == "off":
        yield None
        return
    if mode == "lines":
        from affinity._progress import log_line

        yield lambda done, total, number: log_line(f"proxies: scored trial {number} ({done}/{total})")
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(
        TextColumn("[bold]proxies[/] scoring trials"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as prog:
        task = prog.add_task("proxies", total=None)
        yield lambda done, total, number: prog.update(task, completed=done, total=total)
