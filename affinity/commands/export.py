"""``affinity export MODEL|CONFIG.yaml|CHECKPOINT --format onnx|torchscript``."""

from __future__ import annotations

import click

from affinity.commands._options import checkpoint_option, out_option

#: ``--out`` named the exported file before it meant the results root: a value ending so is
#: still taken as ``--file``, with a deprecation note (a results root is not named so)
_OLD_OUT = (".onnx", ".pt")


@click.command("export")
@click.argument("model", metavar="MODEL|CONFIG.yaml|CHECKPOINT")
@checkpoint_option
@click.option(
    "--format", "fmt", type=click.Choice(["onnx", "torchscript"]), default="onnx", show_default=True
)
@out_option(
    "Results root: the file goes to OUT/export/<model>.onnx (or .torchscript.pt).", old_files=_OLD_OUT
)
@click.option(
    "--file",
    "out_file",
    default=None,
    type=click.Path(dir_okay=False),
    help="Write the exported model to this file instead.",
)
@click.option("--img-size", type=int, default=None, help="Input side; default the checkpoint's, else 224.")
@click.option(
    "--num-classes", type=int, default=None, help="Classifier outputs; default the checkpoint's, else 1000."
)
@click.option(
    "--seed", type=int, default=0, show_default=True, help="Seeds the check input (and untrained weights)."
)
def command(
    model: str,
    checkpoint: str | None,
    fmt: str,
    out: str,
    out_file: str | None,
    img_size: int | None,
    num_classes: int | None,
    seed: int,
) -> None:
    """Export MODEL (a registered name, a model-config YAML, or a checkpoint; --checkpoint
    loads weights into a name or YAML) at its input size, batch 1, then run the exported
    file (onnxruntime for ONNX, torch.jit.load for TorchScript) on a random input and print
    the max |diff| from PyTorch. A model the format cannot express fails with one line
    naming the op.
    """
    from pathlib import Path

    import torch

    from affinity._io import check_writable
    from affinity.errors import ConfigError
    from affinity.export import SUFFIXES, export_model
    from affinity.models import create_model

    if out.lower().endswith(_OLD_OUT):
        if out_file is not None:
            raise ConfigError(
                f"--out {out!r} with --file is not allowed: --out is the results root (a folder)"
            )
        click.echo(
            f"affinity export: --out FILE is deprecated: use --file {out} (--out is the results root)",
            err=True,
        )
        out, out_file = "results", out
    label = Path(model).stem if Path(model).suffix else model
    path = Path(out_file) if out_file else Path(out) / "export" / (label + SUFFIXES[fmt])
    check_writable(path.parent)
    torch.manual_seed(seed)
    net = create_model(model, checkpoint_path=checkpoint, img_size=img_size, num_classes=num_classes)
    click.echo(export_model(net, path, fmt, seed=seed).line())
