"""CycleMLP's Cycle FC sampling as a static affinity: a per-channel shift cycling over channels."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from affinity.ops._common import check_map, shift_groups
from affinity.ops.base import Affinity, register_affinity
from affinity.ops.params import Param, at_least, one_of
from affinity.ops.shift import AXES, _axis_matrix


@register_affinity("cycle_shift")
class CycleShift(Affinity):
    """CycleMLP's Cycle FC before its channel projection (Chen et al., "CycleMLP: A MLP-like
    Architecture for Dense Prediction", ICLR 2022, eq. 4; ShoufaChen/CycleMLP ``CycleFC``).

    Cycle FC is a 1×1 deformable conv with fixed offsets: input channel ``c`` is read at
    ``i + δ(c)`` along one axis, ``δ(c) = ((c + k//2) mod k) − k//2`` for a pseudo-kernel of
    size ``1×k`` (``CycleFC.gen_offset``: offsets 0, +1, −1, 0, ... for k = 3), zero outside the
    map (bilinear sampling at integer offsets). The sampling is this static affinity, one
    one-hot matrix per channel, ``out[c, i] = v[c, i + δ(c)]``; the channel projection ``W``
    (with bias) is the branch's 1×1 projection, so ``CycleFC(v) = W·A·v + b``. The fast path
    is a slice copy per offset, never a deformable conv.

    Args:
        dim: channels of ``v``.
        hw: unused (any map size).
        kernel_size: the pseudo-kernel's length k ≥ 1 (3 in every CycleMLP).
        axis: ``w`` (CycleMLP's ``sfc_h``, pseudo-kernel 1×3) or ``h`` (``sfc_w``, 3×1).
    """

    paper = (
        "Cycle FC sampling (CycleMLP, Chen et al., ICLR 2022, eq. 4): "
        "out[c,i] = v[c, i + ((c + k//2) mod k) - k//2]"
    )

    params = (
        Param("kernel_size", 3, at_least(1), "length k of the pseudo-kernel: channel c moves by its offset"),
        Param("axis", "w", one_of(AXES), "the axis sampled (CycleMLP: one branch each)", search=False),
    )

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.kernel_size: int = self.hparams["kernel_size"]
        self.axis: str = self.hparams["axis"]
        k = self.kernel_size
        #: the offset δ of channels c ≡ r (mod k), for r = 0..k-1
        self.offsets = [((r + k // 2) % k) - k // 2 for r in range(k)]
        axis = 3 if self.axis == "w" else 2
        # out[i] = v[i + δ] is a shift by −δ in out[i] = in[i − shift] terms
        self.groups = [(slice(r, None, k), -delta, axis) for r, delta in enumerate(self.offsets[: self.dim])]

    def forward(self, v: Tensor, x: Tensor | None = None) -> Tensor:
        check_map(v, self.dim, self.name)
        return shift_groups(v, self.groups, "zero")

    def materialize(self, x: Tensor) -> Tensor:
        h, w = x.shape[2], x.shape[3]
        mats = [_axis_matrix(-delta, h, w, self.axis, "zero", x) for delta in self.offsets]
        return torch.stack([mats[c % self.kernel_size] for c in range(self.dim)])[None]
