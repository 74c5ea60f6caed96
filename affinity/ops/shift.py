"""Parameter-free static affinities: identity, AS-MLP's axial shift, S2-MLP's spatial shift.

Each is a one-hot matrix per channel group; the fast paths are slice copies into one
preallocated output, never a matrix and never a whole-tensor pad or roll, with one autograd
node for all the groups (``affinity.ops._common.shift_groups``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor

from affinity.errors import ConfigError
from affinity.ops._common import PADDINGS, Move, check_map, chunk_sizes, shift_groups, shift_matrix
from affinity.ops.base import Affinity, register_affinity
from affinity.ops.params import Inert, Param, at_least, odd, one_of

AXES = ("h", "w")


def _per_channel(mats: list[Tensor], sizes: list[int]) -> Tensor:
    """Stack one (N, N) matrix per group into (1, C, N, N), group g repeated sizes[g] times."""
    return torch.cat([m.expand(n, -1, -1) for m, n in zip(mats, sizes) if n > 0], 0).unsqueeze(0)


def _moves(sizes: Sequence[int], shifts: Sequence[int], axes: Sequence[int]) -> list[Move]:
    """Consecutive channel groups of ``sizes`` (empty ones left out), each with its move."""
    moves, start = [], 0
    for n, shift, axis in zip(sizes, shifts, axes):
        if n:
            moves.append((slice(start, start + n), shift, axis))
        start += n
    return moves


def _axis_matrix(shift: int, h: int, w: int, axis: str, padding: str, like: Tensor) -> Tensor:
    """The (N, N) token matrix of a shift along one axis of an (h, w) map (row-major tokens)."""
    if axis == "w":
        eye = torch.eye(h, dtype=like.dtype, device=like.device)
        return torch.kron(eye, shift_matrix(shift, w, padding, like.dtype, like.device))
    eye = torch.eye(w, dtype=like.dtype, device=like.device)
    return torch.kron(shift_matrix(shift, h, padding, like.dtype, like.device), eye)


@register_affinity("identity")
class Identity(Affinity):
    """The identity affinity, ``A = I`` (Container, Gao et al. 2021, with A = I).

    Args:
        dim: channels of ``v``.
        hw: unused (any map size).
    """

    paper = "Identity (Container, Gao et al., NeurIPS 2021, degenerate case): A = I"
    layout: ClassVar[Mapping[str, Any]] = {"proj_in": False, "proj_out": False}

    def forward(self, v: Tensor, x: Tensor | None = None) -> Tensor:
        check_map(v, self.dim, self.name)
        return v

    def materialize(self, x: Tensor) -> Tensor:
        n = x.shape[2] * x.shape[3]
        return torch.eye(n, dtype=x.dtype, device=x.device)[None, None]


@register_affinity("axial_shift")
class AxialShift(Affinity):
    """AS-MLP's axial shift (Lian et al., ICLR 2022; svip-lab/AS-MLP code).

    Channels split as ``torch.chunk(v, shift_size, 1)`` splits them (ceil(C/s) each, so
    fewer than ``s`` groups when C is small); group ``g`` moves by ``(g − s//2)·dilation``
    along ``axis`` with ``torch.roll`` semantics, ``out[i] = in[i − (g − s//2)·d]``; what
    comes from outside the map takes the padding mode's value. This is the released
    ``F.pad → chunk → roll → cat → narrow`` formulation, computed by slicing. Only the
    shifted axis matters: the released code also pads the other axis and narrows it away.

    Args:
        dim: channels of ``v``.
        hw: the map size, optional; when given, ``reflect`` is checked against it here
            (otherwise at the first forward).
        shift_size: number of channel groups ``s`` (odd, ≥ 1).
        dilation: ``d`` ≥ 1, the step between the groups' shifts (paper only, not the code).
        padding: ``zero`` | ``circular`` | ``reflect`` | ``replicate``. ``reflect`` needs
            ``(s//2)·d`` < the axis length (as ``F.pad``); ``circular`` wraps for any shift.
        axis: ``h`` or ``w``.
    """

    channels_last = True
    paper = (
        "Axial shift (AS-MLP, Lian et al., ICLR 2022): out[c,i] = v[c, i - (g(c) - s//2)·d] along one axis"
    )

    params = (
        Param("shift_size", 5, odd(), "channel groups s; group g moves by (g - s//2)·dilation"),
        Param("dilation", 1, at_least(1), "step between the groups' shifts (paper only, not its code)"),
        Param("padding", "zero", one_of(PADDINGS), "what enters from outside the map"),
        Param("axis", "w", one_of(AXES), "the axis shifted (AS-MLP: one branch each)", search=False),
    )
    inert = (Inert(("dilation", "padding"), lambda p: p["shift_size"] == 1, "one group, shifted by 0"),)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.shift_size: int = self.hparams["shift_size"]
        self.dilation: int = self.hparams["dilation"]
        self.padding: str = self.hparams["padding"]
        self.axis: str = self.hparams["axis"]
        self.sizes = chunk_sizes(self.dim, self.shift_size)
        half = self.shift_size // 2
        self.shifts = [(g - half) * self.dilation for g in range(len(self.sizes))]
        self.groups = _moves(self.sizes, self.shifts, [3 if self.axis == "w" else 2] * len(self.sizes))
        if self.given_hw is not None:
            self._check_size(*self.given_hw)

    def _check_size(self, h: int, w: int) -> None:
        if self.padding != "reflect":
            return
        size = w if self.axis == "w" else h
        pad = (self.shift_size // 2) * self.dilation
        if pad >= size:
            raise ConfigError(
                f"shift_size={self.shift_size}, dilation={self.dilation} with padding='reflect' is "
                f"not allowed on a map of {size} along {self.axis}: reflect needs "
                f"(shift_size//2)*dilation={pad} < {size}"
            )

    def forward(self, v: Tensor, x: Tensor | None = None) -> Tensor:
        check_map(v, self.dim, self.name)
        self._check_size(v.shape[2], v.shape[3])
        return shift_groups(v, self.groups, self.padding)

    def materialize(self, x: Tensor) -> Tensor:
        h, w = x.shape[2], x.shape[3]
        self._check_size(h, w)
        mats = [_axis_matrix(s, h, w, self.axis, self.padding, x) for s in self.shifts]
        return _per_channel(mats, self.sizes)


@register_affinity("spatial_shift")
class SpatialShift(Affinity):
    """S²-MLP's spatial shift (Yu et al., WACV 2022, its spatial-shift pseudo-code).

    Four channel groups split at ``C//4``, ``C//2``, ``3C//4`` as the paper's slices do
    (``x[..., :c/4]``, ``[c/4:c/2]``, ``[c/2:3c/4]``, ``[3c/4:]``; the last group takes the
    remainder, so any C works): group 1 moves +1 along W, group 2 −1 along W, group 3 +1
    along H, group 4 −1 along H; the border row or column keeps its own value (replicate).
    The paper's in-place pseudo-code would smear the first row along the axis if run
    literally in PyTorch; here every group reads from the untouched input.

    Args:
        dim: channels of ``v``.
        hw: unused (any map size).
    """

    paper = (
        "Spatial shift (S2-MLP, Yu et al., WACV 2022): out = v moved +1/-1 along W, +1/-1 along H per group"
    )

    #: (shift, axis) per group, axis 3 = W, 2 = H.
    moves = ((1, 3), (-1, 3), (1, 2), (-1, 2))
    layout: ClassVar[Mapping[str, Any]] = {"proj_in_act": "gelu"}

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        bounds = [0, self.dim // 4, self.dim // 2, 3 * self.dim // 4, self.dim]
        self.sizes = [bounds[g + 1] - bounds[g] for g in range(4)]
        self.groups = _moves(self.sizes, *zip(*self.moves))

    def forward(self, v: Tensor, x: Tensor | None = None) -> Tensor:
        check_map(v, self.dim, self.name)
        return shift_groups(v, self.groups, "replicate")

    def materialize(self, x: Tensor) -> Tensor:
        h, w = x.shape[2], x.shape[3]
        mats = [
            _axis_matrix(shift, h, w, "w" if axis == 3 else "h", "replicate", x) for shift, axis in self.moves
        ]
        return _per_channel(mats, self.sizes)
