"""``affinity models [PATTERN]``: the registered models with their published figures."""

from __future__ import annotations

import click

from affinity.commands._options import format_option


@click.command("models")
@click.argument("pattern", required=False)
@format_option
def command(pattern: str | None, fmt: str) -> None:
    """List registered models (PATTERN: a substring or a shell pattern such as 'as_mlp*')
    with their published params, FLOPs (multiply-adds) and top-1, as figures to compare
    with `affinity profile NAME`, which computes them."""
    import csv
    import io
    import json

    from affinity.models import MODELS

    names = MODELS.matching(pattern, "affinity models")
    rows = []
    for name in names:
        entry = MODELS.get(name)
        ref = entry.reference
        rows.append(
            {
                "name": name,
                "family": entry.cfg.family,
                "params_m": ref.params_m,
                "params_exclude_head": ref.params_exclude_head,
                "gflops": ref.gflops,
                "top1": ref.top1,
                "img_size": ref.img_size,
                "paper": ref.paper,
                "table": ref.table,
                "exempt": ref.exempt,
                "note": ref.note,
            }
        )
    if fmt == "json":
        click.echo(json.dumps(rows, indent=2))
        return
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        click.echo(buf.getvalue(), nl=False)
        return
    from rich.markup import escape
    from rich.table import Table

    from affinity._console import console as make_console

    table = Table(title="registered models: published figures (FLOPs are multiply-adds)")
    widths = {"name": 15, "family": 4, "params (M)": 6, "GFLOPs": 6, "top-1": 5, "img": 3, "paper": 10}
    for col, width in widths.items():
        right = col in ("params (M)", "GFLOPs", "top-1", "img")
        table.add_column(
            col,
            justify="right" if right else "left",
            no_wrap=col != "paper",
            min_width=width,
            overflow="fold",
        )
    for r in rows:
        params = (
            "—" if r["params_m"] is None else f"{r['params_m']}" + ("*" if r["params_exclude_head"] else "")
        )
        table.add_row(
            escape(str(r["name"])) + ("†" if r["note"] else ""),
            "iso" if r["family"] == "isotropic" else "hier",
            params,
            "—" if r["gflops"] is None else f"{r['gflops']}",
            "—" if r["top1"] is None else f"{r['top1']}",
            str(r["img_size"]),
            escape(", ".join(str(r["paper"]).split(", ")[1:]) or str(r["paper"])),  # title, venue
        )
    console = make_console()
    console.print(table)
    console.print("[dim]* excluding the classifier, as the paper counts[/dim]")
    console.print("[dim]† has a note (disagrees with its own paper or code, or rebuilt): --format json[/dim]")
