"""``affinity affinities``: the registered affinities, their kind, parameters and paper."""

from __future__ import annotations

import click

from affinity.commands._options import format_option


@click.command("affinities")
@click.argument("pattern", required=False)
@format_option
def command(pattern: str | None, fmt: str) -> None:
    """List registered affinities (PATTERN: a substring or a shell pattern such as '*shift'):
    name, dynamic or static, hyperparameters with defaults and meaning, and the paper's
    equation (JSON adds each parameter's type and allowed values)."""
    import csv
    import json
    import sys

    from affinity.ops import AFFINITIES  # the package registers every affinity
    from affinity.ops.catalog import describe_affinities

    names = set(AFFINITIES.matching(pattern, "affinity affinities"))
    rows = [r for r in describe_affinities() if r.name in names]
    if fmt == "json":
        click.echo(json.dumps([r.to_dict() for r in rows], indent=2))
        return
    if fmt == "csv":
        writer = csv.writer(sys.stdout)
        writer.writerow(["name", "kind", "params", "paper"])
        for r in rows:
            writer.writerow([r.name, r.kind, " ".join(r.params), r.paper])
        return
    from rich.markup import escape
    from rich.table import Table

    from affinity._console import console

    table = Table(title=f"{len(rows)} affinities")
    for col in ("name", "kind", "parameters", "paper"):
        table.add_column(col, overflow="fold")
    for r in rows:  # escaped: an equation's [c,i] is data, not rich markup
        params = "\n".join(f"{p}: {d['help']}" for p, d in zip(r.params, r.details)) or "-"
        table.add_row(r.name, r.kind, escape(params), escape(r.paper))
    console().print(table)
