"""Options shared by several commands, declared once."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])

device_option = click.option(
    "--device",
    type=click.Choice(["auto", "cpu", "cuda"]),
    default="auto",
    show_default=True,
    help="auto takes CUDA when present, else the CPU.",
)
quiet_option = click.option("--quiet", "-q", is_flag=True, help="No progress display.")
format_option = click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json", "csv"]),
    default="table",
    show_default=True,
)
checkpoint_option = click.option(
    "--checkpoint",
    default=None,
    type=click.Path(dir_okay=False),
    help="Weights to load (.pth/.safetensors): affinity's own, timm's or the authors' released "
    "checkpoint (layout detected from the keys).",
)


def resolve_device(device: str) -> str:
    """The ``--device`` value as a device string (``auto`` resolved); see ``affinity.device``."""
    from affinity.device import resolve_device as resolve

    return str(resolve(device))


def show_progress(quiet: bool) -> bool:
    """Progress displays only on a terminal and without --quiet."""
    import sys

    return not quiet and sys.stderr.isatty()
