"""The console every command prints its tables to.

On a terminal rich fits the table to the window. Piped or redirected (a batch job, CI, a file),
rich would fall back to 80 columns and fold the tables; they are made to be read at 100.
"""

from __future__ import annotations

import sys
from typing import Any

__all__ = ["WIDTH", "console"]

#: what a table prints when it is piped: wide enough for every table affinity prints
WIDTH = 100


def console() -> Any:
    """A rich console on stdout; piped or redirected, ``WIDTH`` columns."""
    from rich.console import Console

    return Console(width=None if sys.stdout.isatty() else WIDTH)
