"""Rendering only: matplotlib figures of the data computed in ``study`` and ``fields``.

Figures are built with ``matplotlib.figure.Figure`` on the Agg canvas, never ``pyplot``: no
display, no global state, safe in worker processes and on headless machines.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from affinity._io import atomic_write_bytes
from affinity.units import scale_for

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from affinity.report.fields import Field, Tiles
    from affinity.report.study import ParamSeries, StudyReport

__all__ = [
    "plot_compare",
    "plot_fields",
    "plot_importances",
    "plot_param",
    "plot_pareto",
    "plot_tiles",
    "png_bytes",
    "save_png",
]

FRONT_COLOR = "#d62728"
OTHER_COLOR = "#7f7f7f"


def png_bytes(fig: Figure, dpi: int = 110) -> bytes:
    """The figure as PNG bytes."""
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    return buf.getvalue()


def save_png(fig: Figure, path: str | Path, dpi: int = 110) -> bytes:
    """Write the figure to ``path`` as PNG (written whole, then renamed); return the bytes."""
    data = png_bytes(fig, dpi)
    atomic_write_bytes(path, data)
    return data


# ---------------------------------------------------------------------------------------------
# study


def plot_pareto(report: StudyReport) -> Figure:
    """Val accuracy against GFLOPs; the Pareto front joined, highlighted and labelled."""
    fig = Figure(figsize=(7.0, 4.8))
    ax = fig.add_subplot()
    pts = report.points.copy()
    unit = scale_for(pts["gflops"] * 1e9)
    pts["flops"] = pts["gflops"] * 1e9 / unit.factor
    rest, front = pts[~pts["front"]], pts[pts["front"]].sort_values("flops")
    ax.scatter(rest["flops"], rest["accuracy"], s=28, color=OTHER_COLOR, alpha=0.7, label="trials")
    ax.step(front["flops"], front["accuracy"], where="post", color=FRONT_COLOR, lw=1.2, alpha=0.6)
    spread = pts[pts["std"].notna()] if "std" in pts else pts.iloc[:0]
    if len(spread):  # the seed-to-seed std of trials trained with several seeds (--repeats)
        ax.errorbar(spread["flops"], spread["accuracy"], yerr=spread["std"], fmt="none", ecolor="grey",
                    elinewidth=1, capsize=3, alpha=0.8, zorder=2, label="± 1 std over seeds")  # fmt: skip
    ax.scatter(
        front["flops"],
        front["accuracy"],
        s=60,
        color=FRONT_COLOR,
        edgecolor="black",
        zorder=3,
        label=f"Pareto front ({len(front)})",
    )
    # front trials at the same point (equal cost and accuracy) share one label, "#5, #23"
    for (flops, acc), same_point in front.groupby(["flops", "accuracy"], sort=False):
        ax.annotate(
            ", ".join(f"#{int(n)}" for n in sorted(same_point["number"])),
            (flops, acc),
            xytext=(5, 5),
            textcoords="offset points",
            fontsize=8,
            color=FRONT_COLOR,
        )
    ax.set_xlabel(f"{unit.label('FLOPs')} (fvcore: one multiply-add = one FLOP)")
    ax.set_ylabel("val accuracy")
    distinct = len(pts[["flops", "accuracy"]].drop_duplicates())
    same = f", {len(pts) - distinct} on top of another" if distinct < len(pts) else ""
    ax.set_title(f"{report.name}: val accuracy vs cost, {len(pts)} finished trials{same}", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    return fig


def plot_hypervolume(report: StudyReport) -> Figure:
    """Hypervolume against trial number, one line per study compared (this one first), all at
    the report's reference point."""
    fig = Figure(figsize=(7.0, 4.0))
    ax = fig.add_subplot()
    for label, curve in report.hypervolume:
        ax.step([n for n, _ in curve], [hv for _, hv in curve], where="post", lw=1.4,
                label=f"{label}: {curve[-1][1]:.4g}" if curve else label)  # fmt: skip
    ax.set_xlabel("trial number")
    ax.set_ylabel("hypervolume (val accuracy x GFLOPs)")
    ax.set_title(
        f"hypervolume of the feasible trials so far; reference: val_acc 0, {report.hv_ref_gflops:.4g} GFLOPs",
        fontsize=9,
    )
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    return fig


def plot_importances(report: StudyReport) -> Figure:
    """Horizontal bars of Optuna's fANOVA importances for val accuracy, each labelled with the
    number of trials it rests on (a conditional parameter: the trials where it exists)."""
    imp = report.importances
    items = sorted(imp.values.items(), key=lambda kv: kv[1])
    fig = Figure(figsize=(6.5, 0.45 * len(items) + 1.4))
    ax = fig.add_subplot()
    ax.barh([f"{k} (n={imp.trials[k]})" for k, _ in items], [v for _, v in items], color="#1f77b4")
    for i, (_, v) in enumerate(items):
        ax.text(v, i, f" {v:.2f}", va="center", fontsize=8)
    ax.set_xlim(0, 1.0)
    ax.set_xlabel("share of val-accuracy variance explained (fANOVA), among the n trials")
    ax.set_title(f"{report.name}: parameter importances")
    return fig


def plot_param(series: ParamSeries, name: str = "") -> Figure:
    """Val accuracy against one parameter: strip + box for categorical and discrete (an integer
    with few values), scatter for numeric (integer ticks for an integer)."""
    fig = Figure(figsize=(5.0, 3.6))
    ax = fig.add_subplot()
    acc = np.asarray(series.accuracy, dtype=float)
    if series.kind in ("categorical", "discrete"):  # one column per value, no axis between
        present = [c for c in series.choices if any(v == c for v in series.values)]
        present += [v for v in dict.fromkeys(series.values) if v not in present]
        groups = [acc[[v == c for v in series.values]] for c in present]
        ax.boxplot(groups, positions=range(len(present)), widths=0.5, showfliers=False)
        jitter = np.random.default_rng(0)
        for i, g in enumerate(groups):
            ax.scatter(
                i + jitter.uniform(-0.12, 0.12, len(g)), g, s=18, alpha=0.75, color="#1f77b4", zorder=3
            )
        ax.set_xticks(range(len(present)), [str(c) for c in present])
    else:
        ax.scatter(np.asarray(series.values, dtype=float), acc, s=22, alpha=0.8, color="#1f77b4")
        if all(isinstance(v, int) for v in series.values):
            from matplotlib.ticker import MaxNLocator

            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if series.log:
            ax.set_xscale("log")
    ax.set_xlabel(series.name + (" (log scale)" if series.log else ""))
    ax.set_ylabel("val accuracy")
    ax.set_title(
        f"{name + ': ' if name else ''}val accuracy vs {series.name} ({len(acc)} trials)", fontsize=10
    )
    ax.grid(alpha=0.3)
    return fig


# ---------------------------------------------------------------------------------------------
# affinities


def _mark_query(ax: Axes, query: tuple[int, int]) -> None:
    r, c = query
    ax.add_patch(Rectangle((c - 0.5, r - 0.5), 1, 1, fill=False, edgecolor="red", lw=1.6))


def _grid(ax: Axes, h: int, w: int, origin: tuple[int, int] = (0, 0)) -> None:
    """Cell lines, and ticks labelled in grid coordinates (a cropped map keeps its own)."""
    r0, c0 = origin
    ax.set_xticks(np.arange(-0.5, w, 1), minor=True)
    ax.set_yticks(np.arange(-0.5, h, 1), minor=True)
    ax.grid(which="minor", color="#cccccc", lw=0.4)
    ax.tick_params(which="both", length=0, labelsize=6)
    ax.set_xticks([0, w - 1], [str(c0), str(c0 + w - 1)])
    ax.set_yticks([0, h - 1], [str(r0), str(r0 + h - 1)])


def _show_map(
    ax: Axes, m: np.ndarray, query: tuple[int, int] | None, title: str, origin: tuple[int, int] = (0, 0)
) -> None:
    lim = float(np.abs(m).max()) or 1.0
    if (m >= 0).all():
        ax.imshow(m, cmap="Blues", vmin=0, vmax=lim, interpolation="nearest")
    else:
        ax.imshow(m, cmap="RdBu_r", vmin=-lim, vmax=lim, interpolation="nearest")
    _grid(ax, m.shape[0], m.shape[1], origin=origin)
    if query is not None:
        _mark_query(ax, (query[0] - origin[0], query[1] - origin[1]))
    ax.set_title(title, fontsize=7)


def plot_fields(fields: Sequence[Field], title: str, max_cols: int = 8) -> Figure:
    """One row per field (affinity), one panel per channel group, the query boxed in red.

    Fields are drawn as given; ``fields.crop_fields`` cuts large maps to the part read.

    Weights use a sequential map when all are >= 0 (shifts, softmax) and a diverging one
    centred at zero otherwise (learned weights).
    """
    ncols = min(max_cols, max(len(f.maps) for f in fields))
    fig = Figure(figsize=(1.7 * ncols + 0.6, 1.95 * len(fields) + 0.8), layout="constrained")
    axes = fig.subplots(len(fields), ncols, squeeze=False)
    for row, f in zip(axes, fields):
        for j, ax in enumerate(row):
            if j >= len(f.maps):
                ax.set_axis_off()
                continue
            _show_map(ax, f.maps[j], f.query, f.labels[j], f.origin)
        row[0].set_ylabel(f.title + (f"\n({f.note})" if f.note else ""), fontsize=7)
    fig.suptitle(title, fontsize=10)
    return fig


def plot_compare(fields: Sequence[Field], title: str) -> Figure:
    """Operators side by side: each panel is the union over channel groups and branches of
    the weights the query takes (the receptive field), the query boxed in red."""
    fig = Figure(figsize=(2.5 * len(fields) + 0.4, 3.4), layout="constrained")
    axes = fig.subplots(1, len(fields), squeeze=False)[0]
    for ax, f in zip(axes, fields):
        union = f.union
        ax.imshow(union > 0, cmap="Blues", vmin=0, vmax=1.25, interpolation="nearest")
        _grid(ax, union.shape[0], union.shape[1])
        _mark_query(ax, f.query)
        ax.set_title(f"{f.title}\n{int((union > 0).sum())} tokens", fontsize=8)
        if f.note:
            ax.set_xlabel(f.note, fontsize=6)
    fig.suptitle(title, fontsize=10)
    return fig


def plot_tiles(tiles: Tiles, max_tiles: int = 256, ncols: int = 16) -> Figure:
    """Learned weights as tiles (MLP-Mixer, figure 10), each scaled to its own largest
    |weight| (blue negative, red positive), laid out in one mosaic image: tile ``i`` is at
    row ``i // ncols``, column ``i % ncols`` (drawn as one image: hundreds of subplots would
    take seconds)."""
    k = min(max_tiles, len(tiles.tiles))
    ncols = min(ncols, k)
    nrows = math.ceil(k / ncols)
    th, tw = tiles.tiles.shape[-2:]
    pad = max(1, min(th, tw) // 6)
    mosaic = np.full((nrows * (th + pad) - pad, ncols * (tw + pad) - pad), np.nan)
    for i in range(k):
        t = tiles.tiles[i]
        lim = float(np.abs(t).max()) or 1.0
        r, c = divmod(i, ncols)
        mosaic[r * (th + pad) : r * (th + pad) + th, c * (tw + pad) : c * (tw + pad) + tw] = t / lim
    scale = 0.75 if th <= 4 else 1.0
    fig = Figure(figsize=(scale * (0.55 * ncols + 1.0), scale * 0.55 * nrows + 1.2))
    ax = fig.add_subplot()
    cmap = matplotlib.colormaps["RdBu_r"].with_extremes(bad="white")
    ax.imshow(mosaic, cmap=cmap, vmin=-1, vmax=1, interpolation="nearest")
    ax.set_xticks([c * (tw + pad) + (tw - 1) / 2 for c in range(ncols)], [str(c) for c in range(ncols)])
    ax.set_yticks(
        [r * (th + pad) + (th - 1) / 2 for r in range(nrows)], [str(r * ncols) for r in range(nrows)]
    )
    ax.tick_params(length=0, labelsize=6)
    for side in ax.spines.values():
        side.set_visible(False)
    shown = f" (first {k} of {len(tiles.tiles)})" if k < len(tiles.tiles) else f" ({k})"
    ax.set_title(f"{tiles.title}{shown}: tile = row label + column label\n{tiles.note}", fontsize=8)
    return fig
