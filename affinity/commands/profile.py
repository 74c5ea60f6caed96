"""``affinity profile NAME|CONFIG.yaml``: params, FLOPs, latency and per-stage cost of a model."""

from __future__ import annotations

import click

from affinity.commands._options import device_option, format_option, quiet_option


@click.command("profile")
@click.argument("model", metavar="NAME|CONFIG.yaml")
@click.option("--img-size", type=int, default=224, show_default=True, help="Input side (square).")
@click.option("--batch-size", type=int, default=1, show_default=True, help="Images per timed forward.")
@device_option
@format_option
@click.option("--no-timing", is_flag=True, help="Skip the latency measurement.")
@click.option("--per-layer", is_flag=True, help="Also list every embedding and block.")
@click.option("--in-chans", type=int, default=3, show_default=True, help="Input channels.")
@click.option("--num-classes", type=int, default=1000, show_default=True, help="Classifier outputs.")
@quiet_option
def command(
    model: str,
    img_size: int,
    batch_size: int,
    device: str,
    fmt: str,
    no_timing: bool,
    per_layer: bool,
    in_chans: int,
    num_classes: int,
    quiet: bool,
) -> None:
    """Params, FLOPs (fvcore: one multiply-add = one FLOP), activations, latency and the
    per-stage and per-affinity cost of a registered model or a model-config YAML, beside the
    paper's published figures.
    """
    import contextlib

    from rich.console import Console

    from affinity.commands._options import resolve_device, show_progress
    from affinity.models import resolve_model_config
    from affinity.profiling import profile, render_table, to_csv, to_json

    resolve_model_config(model)  # unknown names fail here, before torch work
    dev = resolve_device(device)
    err = Console(stderr=True)
    status = (
        err.status(f"profiling {model} at {img_size}×{img_size} on {dev}…")
        if show_progress(quiet)
        else contextlib.nullcontext()
    )
    with status:
        result = profile(
            model,
            img_size=img_size,
            batch_size=batch_size,
            device=dev,
            timing=not no_timing,
            in_chans=in_chans,
            num_classes=num_classes,
        )
    if fmt == "json":
        click.echo(to_json(result))
    elif fmt == "csv":
        click.echo(to_csv(result), nl=False)
    else:
        console = Console()
        for part in render_table(result, per_layer=per_layer):
            console.print(part)
