"""Leaderboards as rich tables (the data comes from ``affinity.search.leaderboard``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from affinity.search.leaderboard import COLUMNS

if TYPE_CHECKING:
    import pandas as pd
    from rich.table import Table

__all__ = ["console", "leaderboard_table"]


def console() -> Any:
    """A rich console on stdout; piped or redirected, wide enough that tables are not cut at 80."""
    import sys

    from rich.console import Console

    return Console(width=None if sys.stdout.isatty() else 200)


#: the leaderboard's own columns up to the duration (hash, duplicate and reason stay in the CSV)
_MAIN = COLUMNS[: COLUMNS.index("duration_s") + 1]
#: the columns of the front table printed at the end of a search
FRONT = ("number", "val_acc", "gflops", "params_m", "latency_ms")
_FMT = {
    "val_acc": "{:.4f}",
    "gflops": "{:.4g}",
    "params_m": "{:.4f}",
    "latency_ms": "{:.2f}",
    "duration_s": "{:.1f}",
}


def _cell(col: str, value: Any) -> str:
    import pandas as pd

    if value is None or (not isinstance(value, (list, tuple)) and pd.isna(value)):
        return ""
    if col in _FMT and isinstance(value, (int, float)):
        return _FMT[col].format(value)
    return str(value)


def leaderboard_table(
    board: pd.DataFrame, title: str, *, params: bool = True, main: tuple[str, ...] = _MAIN
) -> Table:
    """A rich table of ``board``: the ``main`` columns, then the searched parameters (short names)."""
    from rich.table import Table

    from affinity.search.leaderboard import COLUMNS

    cols = [c for c in main if c in board.columns]
    extra = [c for c in board.columns if c not in COLUMNS] if params else []
    table = Table(title=title, title_justify="left")
    for c in cols:
        table.add_column(c, justify="right" if c not in ("state", "status") else "left")
    for c in extra:
        table.add_column(c.removeprefix("model.").removeprefix("mixer."))
    for _, row in board.iterrows():
        table.add_row(*(_cell(c, row[c]) for c in cols), *(_cell(c, row[c]) for c in extra))
    return table
