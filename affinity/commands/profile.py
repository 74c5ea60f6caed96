"""``affinity profile NAME|CONFIG.yaml``: params, FLOPs, latency and per-stage cost of a model."""

from __future__ import annotations

from typing import Any

import click

from affinity.commands._options import checkpoint_option, device_option, format_option, quiet_option


@click.command("profile")
@click.argument("model", metavar="NAME|CONFIG.yaml|CHECKPOINT")
@checkpoint_option
@click.option(
    "--img-size", type=int, default=None, help="Input side (square); default 224 or the checkpoint's."
)
@click.option("--batch-size", type=int, default=1, show_default=True, help="Images per timed forward.")
@device_option
@format_option
@click.option("--no-timing", is_flag=True, help="Skip the latency measurement.")
@click.option("--per-layer", is_flag=True, help="Also list every embedding and block.")
@click.option("--in-chans", type=int, default=None, help="Input channels; default 3 or the checkpoint's.")
@click.option(
    "--num-classes", type=int, default=None, help="Classifier outputs; default 1000 or the checkpoint's."
)
@quiet_option
def command(
    model: str,
    checkpoint: str | None,
    img_size: int | None,
    batch_size: int,
    device: str,
    fmt: str,
    no_timing: bool,
    per_layer: bool,
    in_chans: int | None,
    num_classes: int | None,
    quiet: bool,
) -> None:
    """Params, FLOPs (fvcore: one multiply-add = one FLOP), activations, latency and the
    per-stage and per-affinity cost of a registered model or a model-config YAML (with
    --checkpoint, its weights loaded), or of an affinity checkpoint, beside the paper's
    published figures.
    """
    import contextlib

    from rich.console import Console

    from affinity.checkpoints import is_checkpoint_path
    from affinity.commands._options import resolve_device, show_progress
    from affinity.models import create_model, resolve_model_config
    from affinity.profiling import profile, render_table, to_csv, to_json

    target: Any = model
    if checkpoint is not None or is_checkpoint_path(model):
        # the weights fix the geometry (classes, input size) unless overridden
        name = None if is_checkpoint_path(model) else model
        target = create_model(
            name,
            checkpoint_path=checkpoint or model,
            img_size=img_size,
            num_classes=num_classes,
            in_chans=in_chans,
        )
        img_size, num_classes, in_chans = target.img_size, target.num_classes, target.in_chans
    else:
        resolve_model_config(model)  # unknown names fail here, before torch work
    img_size = 224 if img_size is None else img_size
    num_classes = 1000 if num_classes is None else num_classes
    in_chans = 3 if in_chans is None else in_chans
    dev = resolve_device(device)
    err = Console(stderr=True)
    status = (
        err.status(f"profiling {model} at {img_size}×{img_size} on {dev}…")
        if show_progress(quiet)
        else contextlib.nullcontext()
    )
    with status:
        result = profile(
            target,
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
