"""Rank correlations: Kendall's τ-b and Spearman's ρ, ties handled (scipy is not a dependency).

Both are computed on average ranks, so infinite scores (NASWOT's −inf for a singular kernel)
rank like any other value; pairs with a NaN on either side are left out.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["average_ranks", "kendall_tau_b", "paired", "spearman_rho"]


def average_ranks(values: ArrayLike) -> np.ndarray:
    """1-based ranks of ``values``; tied values share the mean of the ranks they span."""
    a = np.asarray(values, dtype=float)
    order = np.argsort(a, kind="mergesort")
    ranks = np.empty(len(a))
    start = 0
    while start < len(a):
        end = start
        while end + 1 < len(a) and a[order[end + 1]] == a[order[start]]:
            end += 1
        ranks[order[start : end + 1]] = (start + end) / 2 + 1
        start = end + 1
    return ranks


def paired(x: ArrayLike, y: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """``x`` and ``y`` without the pairs where either is NaN."""
    a, b = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    keep = ~(np.isnan(a) | np.isnan(b))
    return a[keep], b[keep]


def kendall_tau_b(x: ArrayLike, y: ArrayLike) -> float:
    """Kendall's τ-b: ``(n_c − n_d) / sqrt((n₀ − n_x)(n₀ − n_y))`` over the pairs ``i < j``,
    where ``n_c`` / ``n_d`` count concordant / discordant pairs and ``n₀ − n_x`` the pairs not
    tied in x. NaN when fewer than two pairs, or when x or y is constant."""
    a, b = paired(x, y)
    if len(a) < 2:
        return math.nan
    ra, rb = average_ranks(a), average_ranks(b)
    upper = np.triu_indices(len(a), 1)
    sx = np.sign(ra[:, None] - ra[None, :])[upper]
    sy = np.sign(rb[:, None] - rb[None, :])[upper]
    untied_x, untied_y = np.count_nonzero(sx), np.count_nonzero(sy)
    if not untied_x or not untied_y:
        return math.nan
    return float((sx * sy).sum() / math.sqrt(untied_x * untied_y))


def spearman_rho(x: ArrayLike, y: ArrayLike) -> float:
    """Spearman's ρ: Pearson's correlation of the average ranks. NaN when fewer than two
    pairs, or when x or y is constant."""
    a, b = paired(x, y)
    if len(a) < 2:
        return math.nan
    ra, rb = average_ranks(a), average_ranks(b)
    da, db = ra - ra.mean(), rb - rb.mean()
    denom = math.sqrt(float((da * da).sum() * (db * db).sum()))
    return float((da * db).sum() / denom) if denom else math.nan
