"""``affinity report STUDY``: one self-contained HTML page of a study, with its plots as PNGs."""

from __future__ import annotations

import click

from affinity.commands._options import quiet_option, storage_option


@click.command("report")
@click.argument("study")
@storage_option
@click.option(
    "--out",
    "out_dir",
    default=None,
    type=click.Path(file_okay=False),
    help="Folder for report.html and the PNGs; default results/STUDY.",
)
@quiet_option
def command(study: str, storage: str | None, out_dir: str | None, quiet: bool) -> None:
    """Write results/STUDY/report.html: leaderboard, Pareto front (val accuracy vs GFLOPs),
    parameter importances, val accuracy per searched parameter, the front's configurations;
    and each plot as a PNG beside it."""
    from pathlib import Path

    from affinity.report.html import write_report
    from affinity.report.study import collect, open_study

    loaded = open_study(study, storage)
    report = collect(loaded)
    page, pngs = write_report(report, Path(out_dir) if out_dir else Path("results") / study)
    if not quiet:
        click.echo(
            f"{page} ({len(report.leaderboard)} trials, {int(report.points['front'].sum())} on the front, "
            f"{len(pngs)} plots)"
        )
