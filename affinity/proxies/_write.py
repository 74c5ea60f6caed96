"""A study's proxies on disk: ``OUT/<study>/proxies/``.

- ``scores.csv``: one row per trained trial (``ProxyStudy.scores``).
- ``correlations.csv``: one row per proxy (``ProxyStudy.correlations``).
- ``proxy_<name>.png``: trained val accuracy against the proxy's score, one point per trial,
  its τ and ρ in the title.

Each file is written whole (``affinity._io``); scatter plots of proxies this run did not
score are removed, so the folder always describes one run.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

from affinity._io import atomic_write_text

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from affinity.proxies._study import ProxyStudy

__all__ = ["plot_proxy", "write_outputs"]


def plot_proxy(result: ProxyStudy, name: str) -> Figure:
    """Trained val accuracy (%) against proxy ``name``'s score, one point per trial; a log
    axis when the positive scores span more than three decades (synflow, snip)."""
    import numpy as np
    from matplotlib.figure import Figure

    scores = result.scores[name].astype(float).to_numpy()
    acc = 100 * result.scores["val_acc"].astype(float).to_numpy()
    finite = np.isfinite(scores)
    fig = Figure(figsize=(5, 3.6))
    ax = fig.add_subplot()
    ax.scatter(scores[finite], acc[finite], s=18, color="#1f77b4")
    positive = scores[finite & (scores > 0)]
    if len(positive) == finite.sum() and len(positive) > 1 and positive.max() / positive.min() > 1e3:
        ax.set_xscale("log")
    row = result.correlations.set_index("proxy").loc[name]
    tau, rho = float(row["kendall_tau"]), float(row["spearman_rho"])
    dropped = int(len(scores) - finite.sum())
    ax.set_title(
        f"{result.study}: {name}  τ = {_fmt(tau)}, ρ = {_fmt(rho)} ({int(row['n'])} trials"
        + (f", {dropped} not finite, not drawn)" if dropped else ")"),
        fontsize=9,
    )
    ax.set_xlabel(f"{name} at initialisation")
    ax.set_ylabel("trained val accuracy (%)")
    ax.grid(alpha=0.3)
    return fig


def _fmt(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.2f}"


def write_outputs(result: ProxyStudy, folder: str | Path) -> list[Path]:
    """Write the CSVs and scatter plots into ``folder``; return the paths written."""
    from affinity.report.pictures import save_png

    folder = Path(folder)
    paths = [
        atomic_write_text(folder / "scores.csv", result.scores.to_csv(index=False)),
        atomic_write_text(folder / "correlations.csv", result.correlations.to_csv(index=False)),
    ]
    for name in result.proxies:
        path = folder / f"proxy_{name}.png"
        save_png(plot_proxy(result, name), path)
        paths.append(path)
    for old in folder.glob("proxy_*.png"):
        if old not in paths:  # a proxy an earlier run scored and this one did not
            old.unlink(missing_ok=True)
    return paths
