"""``affinity profile NAME|CONFIG.yaml``: params, FLOPs, latency and per-stage cost of a model."""

from __future__ import annotations

from typing import Any

import click

from affinity.commands._options import checkpoint_option, device_option, format_option, quiet_option


@click.command("profile")
@click.argument("model", metavar="NAME|CONFIG.yaml|CHECKPOINT")
@checkpoint_option
@click.option(
    "--img-size",
    type=int,
    default=None,
    help="Input side (square); default: the checkpoint's, else CONFIG.yaml's img_size, else 224.",
)
@click.option("--batch-size", type=int, default=1, show_default=True, help="Images per timed forward.")
@device_option
@format_option
@click.option("--no-timing", is_flag=True, help="Skip the latency measurement.")
@click.option("--per-layer", is_flag=True, help="Also list every embedding and block.")
@click.option(
    "--in-chans",
    type=int,
    default=None,
    help="Input channels; default: the checkpoint's, else CONFIG.yaml's dataset's, else 3.",
)
@click.option(
    "--num-classes",
    type=int,
    default=None,
    help="Classifier outputs; default: the checkpoint's, else CONFIG.yaml's dataset's, else 1000.",
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
    published figures. A CONFIG.yaml carrying run settings (as the search's front
    configurations do) is profiled at its img_size, with its dataset's channels and classes
    (so the FLOPs match the run's); the flags override them.
    """
    import contextlib

    from rich.console import Console

    from affinity._console import console as make_console
    from affinity.checkpoints import is_checkpoint_path
    from affinity.commands._options import resolve_device, show_progress
    from affinity.models import create_model, resolve_model_config
    from affinity.profiling import profile, render_table, to_csv, to_json

    target: Any = model
    if checkpoint is not None or is_checkpoint_path(model):
        # the weights fix the geometry (classes, input size) unless overridden
        target = create_model(
            model,
            checkpoint_path=checkpoint,
            img_size=img_size,
            num_classes=num_classes,
            in_chans=in_chans,
        )
        img_size, num_classes, in_chans = target.img_size, target.num_classes, target.in_chans
    else:
        resolve_model_config(model)  # unknown names fail here, before torch work
        img_size, in_chans, num_classes = _geometry(model, img_size, in_chans, num_classes)
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
        console = make_console()
        for part in render_table(result, per_layer=per_layer):
            console.print(part)


def _geometry(
    model: str, img_size: int | None, in_chans: int | None, num_classes: int | None
) -> tuple[int, int, int]:
    """Input side, channels and classes: the flags, else the YAML's run settings (its
    dataset loaded for channels and classes), else 224, 3 and 1000."""
    from pathlib import Path

    from affinity.train.runfile import load_run_config

    settings = {}
    if model.endswith((".yaml", ".yml")) and Path(model).is_file():
        settings = load_run_config(model).settings
    if img_size is None:
        img_size = settings.get("img_size")
    if "dataset" in settings and (in_chans is None or num_classes is None):
        from affinity.data import load_dataset

        data = load_dataset(settings["dataset"], img_size=img_size, seed=settings.get("seed", 0))
        img_size = data.img_size
        in_chans = data.in_chans if in_chans is None else in_chans
        num_classes = data.num_classes if num_classes is None else num_classes
    pick = [(img_size, 224), (in_chans, 3), (num_classes, 1000)]
    size, chans, classes = (default if value is None else value for value, default in pick)
    return size, chans, classes
