"""Progress of a training run: a rich bar on a terminal, a plain timestamped line per epoch
when stderr is not one (a batch job, CI, ``tee``), nothing when disabled (``--quiet``)."""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

from affinity._progress import log_line

#: ``update(advance, epoch, epochs, val_acc)``: ``advance`` steps done; ``val_acc`` is given
#: once an epoch has been evaluated, None otherwise
Update = Callable[[int, int, int, "float | None"], None]


@contextlib.contextmanager
def progress_bar(enabled: bool, total: int) -> Iterator[Update]:
    """The progress display for a run of ``total`` steps (see the module docstring)."""
    if not enabled:
        yield lambda advance, epoch, epochs, acc: None
    elif not sys.stderr.isatty():
        yield _lines(total)
    else:
        with _bar(total) as update:
            yield update


def _lines(total: int) -> Update:
    done = 0
    start = time.perf_counter()

    def update(advance: int, epoch: int, epochs: int, acc: float | None) -> None:
        nonlocal done
        done += advance
        if acc is not None:
            log_line(
                f"train epoch {epoch}/{epochs}: val acc {acc:.1%} "
                f"(step {done}/{total}, {time.perf_counter() - start:.1f} s)"
            )

    return update


@contextlib.contextmanager
def _bar(total: int) -> Iterator[Update]:
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
