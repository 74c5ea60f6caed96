"""``affinity benchmark MODEL...``: img/s, ms/step, peak memory, GMACs and the fraction of a
2048² fp32 GEMM's rate each model reaches, measured side by side in one process."""

from __future__ import annotations

from typing import Any

import click

from affinity.commands._options import device_option, format_option, out_option, quiet_option

#: columns of the table (the CSV and JSON carry every field)
_TABLE = (
    ("model", "model", "{}"),
    ("batch_size", "batch", "{}"),
    ("ms_per_step", "ms/step", "{:.1f}"),
    ("img_per_s", "img/s", "{:.1f}"),
    ("gmacs", "GMACs", "{:.3f}"),
    ("gemm_fraction", "of GEMM", "{:.2f}"),
    ("peak_memory_mb", "MiB", "{:.0f}"),
    ("timm_ratio", "÷ timm", "{:.2f}"),
)
#: figures shown with the quartiles of their per-repetition values
_SPREAD = ("gemm_fraction", "timm_ratio")


@click.command("benchmark")
@click.argument("models", nargs=-1, required=True, metavar="MODEL...")
@click.option(
    "--batch-size",
    "batch_sizes",
    type=int,
    multiple=True,
    default=(8,),
    show_default=True,
    help="Repeatable.",
)
@click.option("--img-size", type=int, default=224, show_default=True, help="Input side (square).")
@click.option("--mode", type=click.Choice(["infer", "train"]), default="infer", show_default=True)
@device_option
@click.option("--amp", is_flag=True, help="Autocast (bfloat16 on the CPU, float16 on CUDA).")
@click.option("--channels-last", is_flag=True, help="Model and input in channels_last memory format.")
@click.option("--compile", "compiled", is_flag=True, help="torch.compile the model (and timm's).")
@click.option(
    "--reparam",
    is_flag=True,
    help="Time the deploy form: model.reparameterize() (RepMLPNet's folds), timm's reparameterize_model.",
)
@click.option(
    "--compare-timm",
    is_flag=True,
    help="Also time timm's counterpart of each model that has one, in the same run (needs timm).",
)
@click.option("--repeats", type=int, default=10, show_default=True, help="Interleaved timed repetitions.")
@click.option("--threads", type=int, default=None, help="torch intra-op threads (default: torch's).")
@format_option
@out_option("Results root; the CSV goes to OUT/benchmarks/.")
@quiet_option
def command(
    models: tuple[str, ...],
    batch_sizes: tuple[int, ...],
    img_size: int,
    mode: str,
    device: str,
    amp: bool,
    channels_last: bool,
    compiled: bool,
    reparam: bool,
    compare_timm: bool,
    repeats: int,
    threads: int | None,
    fmt: str,
    out: str,
    quiet: bool,
) -> None:
    """Time each MODEL at each batch size beside a 2048² fp32 GEMM on the same device, in
    interleaved repetitions (medians), and report img/s, ms/step, peak memory, GMACs (fvcore,
    one image) and the model's multiply-adds per second as a fraction of the GEMM's. With
    --compare-timm, timm's counterpart is timed in the same repetitions and the ratio (ours ÷
    timm's time) reported. Writes OUT/benchmarks/benchmark-<time>.csv.
    """
    import csv
    import io
    import json
    import sys
    import time
    from pathlib import Path

    from affinity._io import atomic_write_text
    from affinity.benchmark import TIMM_NAMES, benchmark
    from affinity.commands._options import resolve_device
    from affinity.errors import ConfigError, check_int
    from affinity.models import resolve_model_config

    for name in models:
        resolve_model_config(name)  # unknown names fail here, before any timing
    # timm is timed beside the models it has (``–`` in the others' rows), as a zoo-wide run wants
    if compare_timm and not any(name in TIMM_NAMES for name in models):
        listed = ", ".join(models)
        raise ConfigError(f"--compare-timm: timm has none of {listed} (it has: {', '.join(TIMM_NAMES)})")
    for size in batch_sizes:
        check_int("batch_size", size, 1)
    check_int("img_size", img_size, 1)
    check_int("repeats", repeats, 1)
    if threads is not None:
        check_int("threads", threads, 1)
    factory = _timm_factory(img_size, reparam) if compare_timm else None
    dev = resolve_device(device)
    rows: list[dict[str, Any]] = []
    path = Path(out) / "benchmarks" / f"benchmark-{time.strftime('%Y%m%d-%H%M%S')}.csv"
    for name in models:
        for size in batch_sizes:
            if not quiet:
                stamp = time.strftime("%H:%M:%S")
                print(f"{stamp} benchmark {name} batch {size} on {dev}", file=sys.stderr, flush=True)
            result = benchmark(
                name,
                batch_size=size,
                img_size=img_size,
                mode=mode,
                device=dev,
                amp=amp,
                channels_last=channels_last,
                compiled=compiled,
                reparam=reparam,
                compare_timm=compare_timm and name in TIMM_NAMES,
                repeats=repeats,
                threads=threads,
                timm_factory=factory,
            )
            rows.append(result.row())
            # rewritten after every result, so an interrupted run keeps what it measured
            buf = io.StringIO()
            writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)
            atomic_write_text(path, buf.getvalue())
    if fmt == "json":
        click.echo(json.dumps(rows, indent=2))
    elif fmt == "csv":
        click.echo(buf.getvalue(), nl=False)
    else:
        _print_table(rows)
    if not quiet:
        print(f"wrote {path}", file=sys.stderr)


def _timm_factory(img_size: int, reparam: bool) -> Any:
    """timm's model constructor at ``img_size`` (reparameterised with ``reparam``); a
    ConfigError when timm is not installed."""
    from affinity._timm import import_timm
    from affinity.errors import ConfigError

    timm = import_timm()
    if timm is None:
        raise ConfigError("--compare-timm needs timm: pip install 'affinity[timm]'")

    def build(name: str) -> Any:
        model = timm.create_model(name, pretrained=False, img_size=img_size)
        return timm.utils.reparameterize_model(model) if reparam else model

    return build


def _cell(row: dict[str, Any], key: str, spec: str) -> str:
    """One table cell: the figure, with its per-repetition quartiles where it has them."""
    if row[key] is None:
        return "–"
    if key in _SPREAD:
        return f"{spec.format(row[key])} ({spec.format(row[key + '_p25'])}–{spec.format(row[key + '_p75'])})"
    return spec.format(row[key])


def _print_table(rows: list[dict[str, Any]]) -> None:
    from rich.table import Table

    from affinity._console import console

    first = rows[0]
    table = Table(
        title=f"{first['mode']}{' (reparameterised)' if first['reparam'] else ''} on {first['device']}, "
        f"{first['threads']} threads, "
        f"GEMM {first['gemm_gmacs_per_s']:.1f} GMAC/s, load {first['load_avg']:.1f}",
        caption=f"GMACs of one image; medians of {first['repeats']} interleaved runs, in brackets the "
        f"quartiles of each run's own figure; peak MiB: {first['memory_source']}",
    )
    for _, header, _ in _TABLE:
        table.add_column(header, justify="left" if header == "model" else "right", no_wrap=True)
    for row in rows:
        table.add_row(*(_cell(row, key, spec) for key, _, spec in _TABLE))
    console().print(table)
