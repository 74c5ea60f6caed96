"""PoolFormer's pooling token mixer as a static affinity: average pooling minus the identity."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor

from affinity.ops._common import check_map
from affinity.ops.base import Affinity, register_affinity
from affinity.ops.params import Param, odd


def window_average(size: int, pool_size: int, like: Tensor) -> Tensor:
    """(size, size) matrix of a 1-D average over ``pool_size`` neighbours, padding not counted.

    Row ``i`` holds ``1 / |window(i) ∩ [0, size)|`` on the positions of its window.
    """
    i = torch.arange(size, device=like.device)
    band = ((i[:, None] - i[None, :]).abs() <= pool_size // 2).to(like.dtype)
    return band / band.sum(1, keepdim=True)


def _box_sum(t: Tensor, radius: int, axis: int) -> Tensor:
    """Sum of each position's neighbours within ``radius`` along ``axis`` (inside the map only)."""
    out = t.clone()
    size = t.shape[axis]
    for d in range(1, min(radius, size - 1) + 1):
        out.narrow(axis, d, size - d).add_(t.narrow(axis, 0, size - d))
        out.narrow(axis, 0, size - d).add_(t.narrow(axis, d, size - d))
    return out


def _inverse_counts(h: int, w: int, pool_size: int, like: Tensor) -> Tensor:
    """(h, w) map of ``1 / |W(i)|``, the window's positions inside the map (a constant: built
    from Python ints, so a traced forward holds no op for it), read-only."""
    return _inverse_counts_on(h, w, pool_size, like.dtype, like.device)


@functools.lru_cache(maxsize=64)
def _inverse_counts_on(h: int, w: int, pool_size: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    # once per map, dtype and device: on a GPU each new tensor from Python numbers is a copy
    # from the host that waits for every kernel queued before it. Made outside inference mode,
    # so that a training step may save it for its backward whichever forward came first
    r = pool_size // 2

    def counts(size: int) -> list[int]:
        return [min(i + r, size - 1) - max(i - r, 0) + 1 for i in range(size)]

    rows, cols = counts(h), counts(w)
    with torch.inference_mode(False):
        return torch.tensor([[1.0 / (a * b) for b in cols] for a in rows], dtype=dtype, device=device)


@register_affinity("pooling")
class Pooling(Affinity):
    """PoolFormer's token mixer (Yu et al., "MetaFormer Is Actually What You Need for Vision",
    CVPR 2022, eq. 4; sail-sg/poolformer ``Pooling``): ``T' = AvgPool(T) − T``.

    A static affinity ``A = P − I`` shared by every channel: ``P[i, j] = 1/|W(i)|`` for the
    tokens ``j`` of the ``k×k`` window ``W(i)`` around ``i`` that lie inside the map
    (``count_include_pad=False``: border rows average fewer tokens, each with a larger weight),
    and ``P = P_H ⊗ P_W`` since the window and its count factor over the axes. The identity is
    subtracted because the block adds its residual (``x + (P − I)·x = P·x``).

    Args:
        dim: channels of ``v``.
        hw: unused (any map size).
        pool_size: odd window side k ≥ 1 (3 in every PoolFormer).
    """

    paper = "Pooling (PoolFormer, Yu et al., CVPR 2022, eq. 4): A = P_H ⊗ P_W − I, AvgPool without padding"

    params = (Param("pool_size", 3, odd(), "side k of the averaging window"),)
    layout: ClassVar[Mapping[str, Any]] = {"proj_in": False, "proj_out": False}

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.pool_size: int = self.hparams["pool_size"]

    def forward(self, v: Tensor, x: Tensor | None = None) -> Tensor:
        # Separable box sums by shifted slice-adds, then one multiply by 1/|W(i)|: the same
        # numbers as PoolFormer's avg_pool2d(count_include_pad=False) − v, 3–45× faster on CPU
        # (benchmarks/ops.py), since P = P_H ⊗ P_W.
        check_map(v, self.dim, self.name)
        h, w = int(v.shape[2]), int(v.shape[3])  # ints while traced too: the counts are a constant
        rows = _box_sum(v, self.pool_size // 2, 3)
        box = _box_sum(rows, self.pool_size // 2, 2)
        return box.mul_(_inverse_counts(h, w, self.pool_size, v)).sub_(v)

    def materialize(self, x: Tensor) -> Tensor:
        h, w = x.shape[2], x.shape[3]
        p = torch.kron(window_average(h, self.pool_size, x), window_average(w, self.pool_size, x))
        return (p - torch.eye(h * w, dtype=x.dtype, device=x.device))[None, None]
