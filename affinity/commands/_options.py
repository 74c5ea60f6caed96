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
storage_option = click.option(
    "--storage",
    default=None,
    envvar="AFFINITY_STORAGE",
    metavar="URL",
    help="Optuna storage URL (postgresql://user@host/db: password from PGPASSWORD or ~/.pgpass) or "
    "journal file; $AFFINITY_STORAGE keeps it off the command line. Default: OUT/STUDY/journal.log.",
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


def train_options(*names: str, default: str | None = None) -> Callable[[F], F]:
    """One option per TrainConfig field in ``names``, typed, described and defaulted by its
    declaration (``affinity.train.config``).

    The options default to None (not given), so that a value from a file is overridden only
    by a flag the user typed.

    Args:
        names: the fields, in the order the help lists them.
        default: what the help says the default is; None: TrainConfig's own default.
    """

    def decorate(func: F) -> F:
        from affinity.train.config import TrainConfig, meaning, rule

        defaults = TrainConfig()
        for name in reversed(names):
            spec = rule(name)
            shown = default if default is not None else getattr(defaults, name)
            func = click.option(
                f"--{name.replace('_', '-')}",
                type=spec.kind if spec.kind in (int, float) else str,
                default=None,
                help=f"{meaning(name)}  [default: {shown}]",
            )(func)
        return func

    return decorate


#: ``--out``: the results root, one meaning for every command (a study lives in OUT/STUDY/)
RESULTS = "results"


def out_option(help_text: str, *, old_files: tuple[str, ...] = ()) -> Callable[[F], F]:
    """``--out DIR``, the results root (default ``results``); a file name there is refused,
    since the commands that write one file take ``--file`` / ``--html`` for it.

    Args:
        help_text: what the command puts under OUT.
        old_files: suffixes of the file a command's ``--out`` named before it meant the
            results root; such a value reaches the command (which takes it as ``--file``,
            with a deprecation note), even when that file exists.
    """

    def check(ctx: click.Context, param: click.Parameter, value: str) -> str:
        if value.lower().endswith((".png", ".html", ".csv", ".json")):
            hint = "--file" if value.lower().endswith(".png") else "--html"
            raise click.BadParameter(
                f"{value!r} is a file name; --out is the results root (a folder): use {hint} for one file"
            )
        return value

    return click.option(
        "--out",
        default=RESULTS,
        show_default=True,
        type=click.Path(file_okay=bool(old_files)),
        callback=check,
        help=help_text,
    )


def resolve_device(device: str) -> str:
    """The ``--device`` value as a device string (``auto`` resolved); see ``affinity.device``."""
    from affinity.device import resolve_device as resolve

    return str(resolve(device))


def show_progress(quiet: bool) -> bool:
    """A live (rich) display: only on a terminal and without --quiet (``affinity._progress``)."""
    from affinity._progress import progress_mode

    return progress_mode(quiet) == "live"
