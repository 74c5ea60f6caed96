"""Leaderboards as rich tables (the data comes from ``affinity.search.leaderboard``).

Built to be read at 100 columns: short headers spelled out in a legend under the table,
FLOPs and parameters in one unit per column (K, M or G, from the column's largest figure),
searched parameters named by their last key (with the stage, ``s1.kind``, where two stages
share one), lists as ``32-64``. Every cell is plain text, never rich markup.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from affinity.search.leaderboard import COLUMNS
from affinity.units import scale_for

if TYPE_CHECKING:
    import pandas as pd
    from rich.console import Group

__all__ = ["FRONT", "MAIN", "console", "leaderboard_table", "param_labels"]

#: what a table prints when it is piped: wide enough for the tables here
WIDTH = 100


def console() -> Any:
    """A rich console on stdout; piped or redirected, 100 columns (the tables are made to fit)."""
    import sys

    from rich.console import Console

    return Console(width=None if sys.stdout.isatty() else WIDTH)


#: the leaderboard table's columns; state, latency, dominance, wall time, hash, duplicate and
#: reason are in the CSV and JSON (100 columns leave room for the searched parameters)
MAIN = ("number", "status", "val_acc", "gflops", "params_m", "pareto_rank")
#: the columns of the front table printed at the end of a search
FRONT = ("number", "val_acc", "gflops", "params_m", "latency_ms")
#: short header -> what it means, for the columns whose header is not their name
_SHORT = {
    "number": ("#", "trial number"),
    "val_acc": ("acc%", "val accuracy in %"),
    "latency_ms": ("ms", "CPU latency at batch 1"),
    "pareto_rank": ("rank", "Pareto rank (1 = front)"),
    "dominated_by": ("dom", "trials that dominate it"),
    "duration_s": ("s", "trial wall time in seconds"),
}
_FMT = {"latency_ms": "{:.2f}", "duration_s": "{:.1f}"}
#: a list-valued choice as Optuna stores it: ``"[32, 64]"``
_LIST = re.compile(r"\[([\d., ]+)\]")


def _missing(value: Any) -> bool:
    import pandas as pd

    return value is None or (not isinstance(value, (list, tuple)) and bool(pd.isna(value)))


def _value(value: Any) -> str:
    """A searched parameter's value, short: lists as ``32-64``, floats to 3 digits."""
    if _missing(value):
        return ""
    if isinstance(value, (list, tuple)):
        return "-".join(_value(v) for v in value)
    if isinstance(value, float):
        return f"{value:.3g}"
    text = str(value)
    listed = _LIST.fullmatch(text)
    return "-".join(v.strip() for v in listed.group(1).split(",")) if listed else text


def param_labels(names: list[str]) -> dict[str, str]:
    """Short column names for searched parameters: the last key, ``s<i>.<key>`` where stages
    share a last key, the path without ``model.`` where that is still ambiguous."""

    def last(name: str) -> str:
        return name.rsplit(".", 1)[-1]

    def staged(name: str) -> str:
        stage = re.search(r"stages\.(\d+)\.", name)
        return f"s{stage.group(1)}.{last(name)}" if stage else last(name)

    labels = {}
    for name in names:
        for form in (last, staged, lambda n: n.removeprefix("model.")):
            label = form(name)
            if sum(form(other) == label for other in names) == 1:
                break
        labels[name] = label
    return labels


def leaderboard_table(
    board: pd.DataFrame, title: str, *, params: bool = True, main: tuple[str, ...] = MAIN, note: str = ""
) -> Group:
    """A rich table of ``board`` (the ``main`` columns, then the searched parameters) and its
    legend, with ``note`` (e.g. how many duplicates are hidden) at the end of the legend."""
    from rich import box
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    cols = [c for c in main if c in board.columns]
    extra = [c for c in board.columns if c not in COLUMNS] if params else []
    flops = scale_for([None if _missing(v) else v * 1e9 for v in board.get("gflops", [])])
    count = scale_for([None if _missing(v) else v * 1e6 for v in board.get("params_m", [])])
    table = Table(title=Text(title), title_justify="left", box=box.SIMPLE_HEAD, padding=0, pad_edge=False)
    legend = []
    rows: list[list[str]] = []
    for _, row in board.iterrows():
        cells = []
        for c in cols:
            value = row[c]
            if _missing(value):
                cells.append("")
            elif c == "gflops":
                cells.append(flops(value * 1e9))
            elif c == "params_m":
                cells.append(count(value * 1e6))
            elif c == "val_acc":
                cells.append(f"{100 * value:.1f}")
            elif c in _FMT:
                cells.append(_FMT[c].format(value))
            else:
                cells.append(str(value))
        rows.append(cells + [_value(row[c]) for c in extra])
    # each column as wide as its widest value or the longest word of its header (headers
    # wrap at spaces, "shift_size" at its underscore): rich would cut values instead

    def width(i: int, header: str) -> int:
        return max([len(r[i]) for r in rows] + [len(w) for w in header.split()])

    for i, c in enumerate(cols):
        header = c
        if c == "gflops":
            header = flops.label("FLOPs")
            legend.append(f"{header}: FLOPs of one image in {flops.word} (multiply-adds, fvcore)")
        elif c == "params_m":
            header = count.label("params")
            legend.append(f"{header}: parameters in {count.word}")
        elif c in _SHORT:
            header, meaning = _SHORT[c]
            legend.append(f"{header}: {meaning}")
        table.add_column(Text(header), justify="left" if c == "status" else "right", width=width(i, header))
    labels = param_labels(extra)
    for i, c in enumerate(extra, start=len(cols)):
        header = labels[c].replace("_", " ")
        table.add_column(Text(header), width=width(i, header))
    if extra:
        legend.append("; ".join(f"{labels[c]} = {c}" for c in extra))
    for cells in rows:
        table.add_row(*(Text(cell) for cell in cells))
    lines = "; ".join(legend) + (f". {note}" if note else "")
    return Group(table, Text(lines, style="dim"))
