"""Leaderboards as rich tables (the data comes from ``affinity.search.leaderboard``).

Built to be read at 100 columns: short headers spelled out in a legend under the table,
FLOPs and parameters in one unit per column (K, M or G, from the column's largest figure),
searched parameters named by their last key (with the stage, ``s1.kind``, where two stages
share one), lists as ``32-64``. Every cell is plain text, never rich markup.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from affinity._console import WIDTH
from affinity.search.leaderboard import COLUMNS
from affinity.units import Scale, scale_for

if TYPE_CHECKING:
    import pandas as pd
    from rich.console import Group

__all__ = ["FRONT", "MAIN", "leaderboard_table", "param_labels"]

#: the leaderboard table's columns; state, latency, dominance, wall time, hash, duplicate and
#: reason are in the CSV and JSON (100 columns leave room for the searched parameters)
MAIN = ("number", "status", "val_acc", "val_acc_std", "gflops", "params_m", "pareto_rank")
#: the columns of the front table printed at the end of a search
FRONT = ("number", "val_acc", "val_acc_std", "gflops", "params_m", "latency_ms")
#: short header -> what it means, for the columns whose header is not their name
_SHORT = {
    "number": ("#", "trial number"),
    "val_acc": ("acc%", "val accuracy in %"),
    "val_acc_std": ("±%", "its std over the training seeds in %"),
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
        stage = re.search(r"stages(?:\.(\d+)|\[(\d+)\])\.", name)
        return f"s{stage.group(1) or stage.group(2)}.{last(name)}" if stage else last(name)

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
    """Rich tables of ``board`` (the ``main`` columns, then the searched parameters) and a
    legend, with ``note`` (e.g. how many duplicates are hidden) at its end.

    Parameters that do not fit beside the main columns in ``WIDTH`` columns continue in
    further tables, each keyed by the trial number, so no value is ever cut.
    """
    from rich import box
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    cols = [c for c in main if c in board.columns]
    extra = [c for c in board.columns if c not in COLUMNS] if params else []
    flops = scale_for([None if _missing(v) else v * 1e9 for v in board.get("gflops", [])])
    count = scale_for([None if _missing(v) else v * 1e6 for v in board.get("params_m", [])])
    legend = []
    headers = []
    for c in cols:
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
        headers.append(header)
    labels = param_labels(extra)
    headers += [labels[c].replace("_", " ") for c in extra]  # "shift size" wraps at the space
    if extra:
        legend.append("; ".join(f"{labels[c]} = {c}" for c in extra))
    rows = [
        [*(_cell(c, row[c], flops, count) for c in cols), *(_value(row[c]) for c in extra)]
        for _, row in board.iterrows()
    ]
    # each column as wide as its widest value or the longest word of its header: rich would
    # cut values instead
    widths = [max([len(r[i]) for r in rows] + [len(w) for w in h.split()]) for i, h in enumerate(headers)]
    key = cols.index("number") if "number" in cols else None
    parts: list[list[int]] = [list(range(len(cols)))]
    for i in range(len(cols), len(headers)):
        used = sum(widths[j] + 1 for j in parts[-1]) + 2
        if used + widths[i] + 1 > WIDTH and len(parts[-1]) > (1 if key is not None else 0):
            parts.append([] if key is None else [key])
        parts[-1].append(i)
    tables = []
    for n, part in enumerate(parts):
        table = Table(
            title=Text(title if n == 0 else "(continued)"),
            title_justify="left",
            box=box.SIMPLE_HEAD,
            padding=0,
            pad_edge=False,
        )
        for j in part:
            justify = "right" if j < len(cols) and cols[j] != "status" else "left"
            table.add_column(Text(headers[j]), justify=justify, width=widths[j])  # type: ignore[arg-type]
        for cells in rows:
            table.add_row(*(Text(cells[j]) for j in part))
        tables.append(table)
    lines = "; ".join(legend) + (f". {note}" if note else "")
    return Group(*tables, Text(lines, style="dim"))


def _cell(col: str, value: Any, flops: Scale, count: Scale) -> str:
    """One main-column cell: FLOPs and parameters in their column's unit, accuracy in %."""
    if _missing(value):
        return ""
    if col == "gflops":
        return flops(value * 1e9)
    if col == "params_m":
        return count(value * 1e6)
    if col in ("val_acc", "val_acc_std"):
        return f"{100 * value:.1f}"
    if col in _FMT:
        return _FMT[col].format(value)
    return str(value)
