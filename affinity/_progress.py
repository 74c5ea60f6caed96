"""How long work shows progress, decided once for every command.

On a terminal: a rich live display. When stderr is not a terminal (a batch job, CI, ``tee``):
plain timestamped lines, one per unit of work (a trial, an epoch, a tenth of a download).
With ``--quiet``: nothing.
"""

from __future__ import annotations

import sys
import time
from typing import Literal

__all__ = ["Mode", "log_line", "progress_mode"]

Mode = Literal["live", "lines", "off"]


def progress_mode(quiet: bool) -> Mode:
    """``off`` with --quiet, ``live`` on a terminal, ``lines`` when stderr is piped."""
    if quiet:
        return "off"
    return "live" if sys.stderr.isatty() else "lines"


def log_line(text: str) -> None:
    """One plain progress line on stderr: ``HH:MM:SS text``, flushed at once."""
    print(f"{time.strftime('%H:%M:%S')} {text}", file=sys.stderr, flush=True)
