"""``affinity show``: draw what a mixer aggregates (receptive fields) and its learned weights."""

from __future__ import annotations

from typing import Any

import click

from affinity.commands._options import checkpoint_option, out_option


@click.command("show")
@click.argument("target", required=False, metavar="MODEL|CONFIG.yaml|CHECKPOINT")
@checkpoint_option
@click.option("--layer", default=None, help="Mixer index (0 = first, -1 = last) or module name; default 0.")
@click.option("--query", default=None, metavar="ROW,COL", help="Output token to explain; default the centre.")
@out_option("Results root: pictures go to OUT/show/ (show_<target>_<layer>.png, compare.png).")
@click.option(
    "--file",
    "out_file",
    default=None,
    type=click.Path(dir_okay=False),
    help="Write the PNG here instead (tiles beside it).",
)
@click.option("--img-size", type=int, default=None, help="Input size (default: the model's or checkpoint's).")
@click.option(
    "--compare",
    default=None,
    metavar="OP,OP,...",
    help="Draw several operators' receptive fields side by side instead, e.g. "
    "dwconv,axial_shift,spatial_shift,attention,token_mlp (NAME:KEY=VALUE overrides a parameter).",
)
@click.option("--grid", default=14, show_default=True, help="Token grid side for --compare.")
def command(
    target: str | None,
    checkpoint: str | None,
    layer: str | None,
    query: str | None,
    out: str,
    out_file: str | None,
    img_size: int | None,
    compare: str | None,
    grid: int,
) -> None:
    """Draw, for one query token, the weights each affinity of a layer aggregates from (one
    panel per head or channel group), computed from the affinities themselves; and learned
    static weights (token-MLP hidden units over the token grid, dwconv kernels) as tiles.

    A checkpoint (or MODEL with --checkpoint: timm's, the authors' or affinity's weights)
    shows the learned affinities, drawn exactly as an untrained model's. With --compare,
    draw several operators' receptive fields on one grid instead.
    """
    from pathlib import Path

    from affinity._io import check_writable
    from affinity.commands._outputs import printed_if_unwritten
    from affinity.errors import ConfigError
    from affinity.report import pictures
    from affinity.report.fields import compare_fields, parse_query

    if compare is not None:
        if target is not None or checkpoint is not None:
            raise ConfigError(
                f"{target or checkpoint!r} with --compare is not allowed: --compare draws operators, "
                "not a model"
            )
        if grid < 3:
            raise ConfigError(f"--grid={grid} is not allowed: at least 3")
        specs = [s for s in compare.split(",") if s.strip()]
        if not specs:
            raise ConfigError(f"--compare={compare!r} is not allowed: a comma-separated list of affinities")
        q = parse_query(query, (grid, grid))
        path = Path(out_file) if out_file else Path(out) / "show" / "compare.png"
        check_writable(path.parent)
        fields = compare_fields(specs, hw=(grid, grid), query=q)
        fig = pictures.plot_compare(
            fields, f"receptive field of token ({q[0]}, {q[1]}) on a {grid}×{grid} grid"
        )
        summary = f"{path}: " + "; ".join(f"{f.title}: {int(f.support.sum())} tokens" for f in fields)
        with printed_if_unwritten(path, lambda: summary, "the picture"):
            pictures.save_png(fig, path)
        click.echo(summary)
        return
    if target is None:
        raise ConfigError("MODEL|CONFIG.yaml|CHECKPOINT is missing: give one, or use --compare OP,OP,...")

    from affinity.report.layers import layer_fields, load_model

    check_writable(Path(out_file).parent if out_file else Path(out) / "show")
    model, label, size, in_chans = load_model(target, img_size, checkpoint)
    data = layer_fields(model, layer=layer, img_size=size, in_chans=in_chans, query=query)
    default = Path(out) / "show" / f"show_{label}_{data.layer.replace('.', '_')}.png"
    path = Path(out_file) if out_file else default
    written: list[str] = []
    with printed_if_unwritten(path.parent, lambda: "\n".join(written), "every picture"):
        _draw(data, label, size, path, written)
    for line in data.skipped:
        written.append(f"no map for {line}")
    click.echo("\n".join(written))


def _draw(data: Any, label: str, size: int, path: Any, written: list[str]) -> None:
    """Save the fields and tiles of ``data`` as PNGs beside ``path``, appending each to ``written``."""
    from affinity.report import pictures
    from affinity.report.fields import crop_fields

    if data.fields:
        q = data.fields[0].query
        title = (
            f"{label} @ {size}px, {data.layer} ({data.hw[0]}×{data.hw[1]} tokens): "
            f"weights token ({q[0]}, {q[1]}) aggregates, per channel group\n{data.note}"
        )
        pictures.save_png(pictures.plot_fields(crop_fields(data.fields), title), path)
        written.append(str(path))
    for i, tiles in enumerate(data.tiles):
        tiles_path = path.with_name(f"{path.stem}_tiles{i if len(data.tiles) > 1 else ''}.png")
        pictures.save_png(pictures.plot_tiles(tiles), tiles_path)
        written.append(f"{tiles_path} ({len(tiles.tiles)} tiles of {tiles.title})")
