"""``affinity report STUDY``: one self-contained HTML page of a study, with its plots as PNGs."""

from __future__ import annotations

import click

from affinity.commands._options import out_option, quiet_option, storage_option


@click.command("report")
@click.argument("study")
@click.argument("compare", nargs=-1, metavar="[STUDY]...")
@storage_option
@out_option("Results root: the study is OUT/STUDY/, the page OUT/STUDY/report.html.")
@click.option(
    "--html",
    "html_file",
    default=None,
    type=click.Path(dir_okay=False),
    help="Write the page to this file instead (its PNGs go beside it).",
)
@click.option(
    "--with-duplicates",
    is_flag=True,
    help="Plot trials that repeat an earlier configuration too (by default each configuration once).",
)
@quiet_option
def command(
    study: str,
    compare: tuple[str, ...],
    storage: str | None,
    out: str,
    html_file: str | None,
    with_duplicates: bool,
    quiet: bool,
) -> None:
    """Write OUT/STUDY/report.html: leaderboard, Pareto front (val accuracy vs GFLOPs),
    hypervolume against trial number, parameter importances, val accuracy per searched
    parameter, the front's configurations; and each plot as a PNG beside it.

    More STUDY names (e.g. the same space searched with other samplers) add their
    hypervolume curves to the first study's page, all at one reference point."""
    from pathlib import Path

    from affinity._io import check_writable
    from affinity.commands._outputs import printed_if_unwritten
    from affinity.report.html import write_report
    from affinity.report.study import collect
    from affinity.search.study import load_study

    loaded = load_study(study, storage, out=out)
    page_path = Path(html_file) if html_file else Path(out) / study / "report.html"
    folder = check_writable(page_path.parent)
    others = [load_study(name, storage, out=out) for name in compare]
    report = collect(loaded, with_duplicates=with_duplicates, compare=others)
    with printed_if_unwritten(folder, lambda: report.leaderboard.to_csv(index=False), "the report"):
        page, pngs = write_report(report, folder, html_name=page_path.name)
    if not quiet:
        click.echo(
            f"{page} ({len(report.leaderboard)} trials, {int(report.points['front'].sum())} on the front, "
            f"{len(pngs)} plots)"
        )
