"""Progress of a training run: a rich bar on a terminal, nothing elsewhere."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from typing import Any


@contextlib.contextmanager
def progress_bar(enabled: bool, total: int) -> Iterator[Callable[[int, int, int, float | None], None]]:
    """A rich bar over all steps showing epoch and val accuracy; a no-op off a terminal."""
    if not enabled or not sys.stderr.isatty():
        yield lambda advance, epoch, epochs, acc: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(
        TextColumn("[bold]train[/] epoch {task.fields[epoch]}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("val acc {task.fields[acc]}"),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as prog:
        task = prog.add_task("train", total=total, epoch="1", acc="-")

        def update(advance: int, epoch: int, epochs: int, acc: float | None) -> None:
            fields: dict[str, Any] = {"epoch": f"{epoch}/{epochs}"}
            if acc is not None:
                fields["acc"] = f"{acc:.1%}"
            prog.update(task, advance=advance, **fields)

        yield update
