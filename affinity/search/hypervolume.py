"""The hypervolume of a study's (max val accuracy, min GFLOPs) front: the area of the
objective plane its feasible trials dominate, bounded by a reference point.

Reference point: val accuracy 0 and, unless given, 1.1 × the largest GFLOPs costed in the
study (trained, over budget or refused after costing: every candidate whose cost is known),
so the costliest design still adds area. Studies are comparable only at the same reference
point: pass one (``--hv-ref-gflops``) to compare studies.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "REF_MARGIN",
    "contributions",
    "hypervolume",
    "hypervolume_curve",
    "reference_gflops",
    "study_hypervolume",
]

#: the default reference GFLOPs is this × the largest GFLOPs costed
REF_MARGIN = 1.1


def hypervolume(points: Iterable[tuple[float, float]], ref_gflops: float) -> float:
    """Area dominated by ``(val_acc, gflops)`` points (maximise accuracy, minimise GFLOPs)
    within the reference point ``(0, ref_gflops)``: a sweep over the points sorted by GFLOPs,
    each strip as high as the best accuracy at or below its GFLOPs."""
    pts = sorted((g, a) for a, g in points if a > 0 and g < ref_gflops)
    area, best = 0.0, 0.0
    for i, (g, a) in enumerate(pts):
        best = max(best, a)
        right = pts[i + 1][0] if i + 1 < len(pts) else ref_gflops
        area += (right - g) * best
    return area


def contributions(points: list[tuple[float, float]], ref_gflops: float) -> list[float]:
    """Each point's exclusive hypervolume contribution: the area lost when it alone is removed
    (0 for a dominated point, and for each of two equal points)."""
    whole = hypervolume(points, ref_gflops)
    return [whole - hypervolume(points[:i] + points[i + 1 :], ref_gflops) for i in range(len(points))]


def _finite(x: object) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def reference_gflops(board: pd.DataFrame) -> float | None:
    """``REF_MARGIN`` × the largest GFLOPs costed in the leaderboard (None: nothing costed)."""
    costs = [g for g in board["gflops"] if _finite(g)]
    return REF_MARGIN * max(costs) if costs else None


def _feasible(board: pd.DataFrame) -> pd.DataFrame:
    """Trained trials within the budget (over-budget ones are PRUNED and never trained)."""
    ok = board[(board["state"] == "COMPLETE") & board["val_acc"].notna() & board["gflops"].notna()]
    return ok.sort_values("number")


def study_hypervolume(board: pd.DataFrame, ref_gflops: float | None = None) -> tuple[float, float | None]:
    """(hypervolume, reference GFLOPs) of a leaderboard; 0 with no reference when nothing
    was costed."""
    ref = ref_gflops if ref_gflops is not None else reference_gflops(board)
    if ref is None:
        return 0.0, None
    done = _feasible(board)
    return hypervolume(zip(done["val_acc"], done["gflops"]), ref), ref


def hypervolume_curve(board: pd.DataFrame, ref_gflops: float) -> list[tuple[int, float]]:
    """``(trial number, hypervolume of the trials up to it)`` for every finished trial."""
    done = _feasible(board)
    points: list[tuple[float, float]] = []
    curve = []
    by_number = dict(zip(done["number"], zip(done["val_acc"], done["gflops"])))
    for n in sorted(int(x) for x in board["number"]):
        if n in by_number:
            points.append(by_number[n])
        curve.append((n, hypervolume(points, ref_gflops)))
    return curve
