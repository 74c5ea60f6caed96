"""The proxies' ranking as a rich table (the data comes from ``score_study``)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.table import Table

    from affinity.proxies._study import ProxyStudy

__all__ = ["correlation_table"]


def _num(value: float, spec: str) -> str:
    return "n/a" if math.isnan(value) else format(value, spec)


def correlation_table(result: ProxyStudy, folder: Path | None = None) -> Table:
    """One row per proxy, best Kendall τ first: τ-b and ρ with the val accuracy and with the
    hypervolume contribution, trials, seconds per trial, paper."""
    from rich.table import Table

    rows = result.correlations.sort_values("kendall_tau", ascending=False, na_position="last")
    n = len(result.scores)
    table = Table(
        title=f"{result.study}: zero-cost proxies vs trained val accuracy and hypervolume contribution "
        f"(HV; {n} trained configurations)",
        caption=(
            f"scored untrained, each from its trial's seed, on {result.n_batches} batch(es) of "
            f"{result.batch_size} training images"
            + (f"; scores and plots in {folder}" if folder is not None else "")
        ),
    )
    table.add_column("proxy")
    table.add_column("Kendall τ", justify="right")
    table.add_column("Spearman ρ", justify="right")
    table.add_column("τ HV", justify="right")
    table.add_column("ρ HV", justify="right")
    table.add_column("n", justify="right")
    table.add_column("s/trial", justify="right")
    table.add_column("paper", overflow="fold")
    for row in rows.itertuples(index=False):
        table.add_row(
            str(row.proxy),
            _num(float(row.kendall_tau), "+.3f"),
            _num(float(row.spearman_rho), "+.3f"),
            _num(float(row.kendall_tau_hv), "+.3f"),
            _num(float(row.spearman_rho_hv), "+.3f"),
            str(row.n),
            _num(float(row.s_per_trial), ".3f"),
            str(row.paper),
        )
    return table
