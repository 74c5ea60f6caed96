"""Multi-fidelity for Pareto studies: the rung rule of multi-objective successive halving.

MO-ASHA (Schmucker et al., Multi-objective Asynchronous Successive Halving, 2021) trains
every candidate to a first rung (e.g. 1 epoch), and lets a candidate continue to the next
rung (3 epochs, then 9) only while it is among the best ``1/η`` of the candidates that
reached its rung, ranked by non-dominated sorting of (val accuracy at the rung, GFLOPs), the
last front that does not fit whole cut by crowding distance (Deb et al., NSGA-II, IEEE TEC
2002): the spread-out points of a front go first, so the promoted set covers the whole
accuracy/cost trade-off rather than one end of it.

This module is the rule alone, a pure function of the rung's figures; nothing here reads a
study or stops a trial.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from affinity.search.leaderboard import pareto_ranks

__all__ = ["crowding_distance", "promoted"]


def crowding_distance(acc: Sequence[float], gflops: Sequence[float]) -> list[float]:
    """NSGA-II's crowding distance of each point of one front (Deb et al. 2002, section III-B):
    per objective, the points sorted by it, each interior point adds the gap between its two
    neighbours divided by the objective's range; the two extremes of each objective get
    infinity. An objective on which every point is equal adds nothing."""
    n = len(acc)
    distance = [0.0] * n
    for values in (acc, gflops):
        order = sorted(range(n), key=lambda i: (values[i], i))
        span = values[order[-1]] - values[order[0]] if n else 0.0
        if n == 0 or span == 0:
            continue
        distance[order[0]] = distance[order[-1]] = math.inf
        for left, mid, right in zip(order, order[1:], order[2:]):
            distance[mid] += (values[right] - values[left]) / span
    return distance


def promoted(acc: Sequence[float], gflops: Sequence[float], eta: int) -> list[int]:
    """The indices of the candidates that continue past a rung: the best ``len(acc) // eta``
    by non-dominated rank of (``acc`` maximised, ``gflops`` minimised); within the first
    front that does not fit whole, the largest crowding distance first, then the lower index
    (the earlier trial). Sorted ascending; empty while fewer than ``eta`` reached the rung.

    Args:
        acc: val accuracy of each candidate at this rung.
        gflops: its GFLOPs.
        eta: the reduction factor (≥ 2): one in ``eta`` continues.
    """
    if eta < 2:
        raise ValueError(f"eta={eta} is not allowed: an integer >= 2")
    keep = len(acc) // eta
    ranks, _ = pareto_ranks(acc, gflops)
    chosen: list[int] = []
    for rank in sorted(set(ranks)):
        front = [i for i, r in enumerate(ranks) if r == rank]
        if len(chosen) + len(front) > keep:
            distance = crowding_distance([acc[i] for i in front], [gflops[i] for i in front])
            by_spread = sorted(range(len(front)), key=lambda j: (-distance[j], front[j]))
            chosen += [front[j] for j in by_spread[: keep - len(chosen)]]
            break
        chosen += front
    return sorted(chosen)
