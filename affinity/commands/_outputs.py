"""A command's results when writing them fails after the work (disk full, a folder gone
read-only): the result goes to stdout, then one error line, so nothing computed is lost.

Output locations are checked before the work with ``affinity._io.check_writable``; this is
the other half, for a write that fails anyway.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

import click


@contextlib.contextmanager
def printed_if_unwritten(
    where: str | Path, result: Callable[[], str], what: str = "the results"
) -> Iterator[None]:
    """Run the writes in the block; an ``OSError`` prints ``result()`` to stdout and becomes a
    ``ConfigError`` naming ``where`` and the reason (the CLI's one line and exit code 2).

    Args:
        where: the folder or file being written.
        result: the command's result as text (called only on failure).
        what: what could not be written, for the message.
    """
    from affinity.errors import ConfigError

    try:
        yield
    except OSError as exc:
        text = result()
        if text:
            click.echo(text, nl=not text.endswith("\n"))
        raise ConfigError(
            f"{where}: could not write {what} ({exc.strerror or exc}); the result is printed above"
        ) from None
