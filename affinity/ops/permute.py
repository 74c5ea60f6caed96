"""Vision Permutator's Permute-MLP branch: a token MLP along one axis over channel segments."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from affinity.errors import ConfigError, check
from affinity.ops._common import check_map
from affinity.ops.base import Affinity, register_affinity
from affinity.ops.params import BOOL, Param, at_least, one_of, optional
from affinity.ops.shift import AXES


@register_affinity("permute_mlp")
class PermuteMLP(Affinity):
    """One Permute-MLP branch of Vision Permutator (Hou et al., "Vision Permutator: A
    Permutable MLP-Like Architecture for Visual Recognition", TPAMI 2022, eq. 1–2;
    Andrew-Qibin/VisionPermutator ``WeightedPermuteMLP.mlp_h`` / ``mlp_w``).

    The C channels split into ``G = segment_dim`` segments of ``S = C/G`` consecutive
    channels; along the height branch, each segment's ``H × S`` block (one column w) is
    permuted into one vector and mapped by one ``Linear(H·S, H·S)`` shared by every segment and
    column: ``out[g, s, h, w] = Σ_{h', s'} W[(h, s), (h', s')] · v[g, s', h', w]``. So the
    affinity is static and mixes the tokens along H *and* the S channels of a segment: its
    matrix is ``I_W ⊗ W`` over (channel-in-segment, token) pairs, one block per segment
    (``channel_block = S``; ``materialize`` gives ``(1, 1, S·N, S·N)``). With ``S = 1`` it is
    the pure axial token MLP ``W_h ⊗ I_W``. The width branch is the same along W. ViP picks
    ``G`` so that ``H·S = C`` (its ``Linear(C, C)``); here any G dividing C works, the weight
    being ``(L·S)²`` for the axis length L. Initialised as ViP: truncated normal (std 0.02),
    zero bias.

    Args:
        dim: channels of ``v``.
        hw: the map size (H, W); required (the weight is tied to the axis length).
        axis: ``h`` (ViP's ``mlp_h``) or ``w`` (``mlp_w``).
        segment_dim: G, the number of segments (divides ``dim``); default: the axis length,
            as ViP's models (then ``L·S = C``).
        bias: a bias on the linear map (ViP: none, ``qkv_bias=False``).
    """

    paper = (
        "Permute-MLP (Vision Permutator, Hou et al., TPAMI 2022, eq. 1-2): "
        "A = I ⊗ W over (token along H or W, channel in segment)"
    )

    params = (
        Param("axis", "h", one_of(AXES), "the axis mixed (ViP: one branch each)", search=False),
        Param(
            "segment_dim",
            None,
            optional(at_least(1), "the axis length"),
            "segments G, each of S = dim/G channels; divides dim",
        ),
        Param("bias", False, BOOL, "a bias on the linear map"),
    )

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        p = self.hparams
        self.axis: str = p["axis"]
        segment_dim, bias = p["segment_dim"], p["bias"]
        self.hw: tuple[int, int] = self.required_hw()  # the weight is tied to the axis length
        length = self.hw[0] if self.axis == "h" else self.hw[1]
        segments = length if segment_dim is None else segment_dim
        self.segment_dim: int = segments
        check(
            self.dim % self.segment_dim == 0,
            "segment_dim",
            segments,
            f"a divisor of dim={self.dim}"
            + (f" (default: the axis length {length})" if segment_dim is None else ""),
        )
        self.channel_block = self.dim // self.segment_dim  # S
        size = length * self.channel_block
        self.weight = nn.Parameter(torch.empty(size, size))
        nn.init.trunc_normal_(self.weight, std=0.02)
        self.affine = bool(bias)
        self.bias: nn.Parameter | None = nn.Parameter(torch.zeros(size)) if bias else None

    def _check_size(self, v: Tensor) -> None:
        check_map(v, self.dim, self.name)
        if tuple(v.shape[2:]) != self.hw:
            raise ConfigError(
                f"permute_mlp: a {v.shape[2]}x{v.shape[3]} map is not allowed: the weight is for "
                f"{self.hw[0]}x{self.hw[1]}"
            )

    def forward(self, v: Tensor, x: Tensor | None = None) -> Tensor:
        self._check_size(v)
        b, c, h, w = v.shape
        g, s = self.segment_dim, self.channel_block
        seg = v.reshape(b, g, s, h, w)
        if self.axis == "h":
            t = seg.permute(0, 1, 4, 3, 2).reshape(b, g, w, h * s)  # (B, G, W, H·S)
            t = F.linear(t, self.weight, self.bias).reshape(b, g, w, h, s)
            return t.permute(0, 1, 4, 3, 2).reshape(b, c, h, w)
        t = seg.permute(0, 1, 3, 4, 2).reshape(b, g, h, w * s)  # (B, G, H, W·S)
        t = F.linear(t, self.weight, self.bias).reshape(b, g, h, w, s)
        return t.permute(0, 1, 4, 2, 3).reshape(b, c, h, w)

    def materialize(self, x: Tensor) -> Tensor:
        self._check_size(x[:, :1].expand(-1, self.dim, -1, -1))
        h, w = self.hw
        s, n = self.channel_block, h * w
        if self.axis == "h":
            w4 = self.weight.to(x.dtype).view(h, s, h, s).permute(1, 0, 3, 2)  # (s, h, s', h')
            eye = torch.eye(w, dtype=x.dtype, device=x.device)
            m = torch.einsum("ahbk,wv->ahwbkv", w4, eye)
        else:
            w4 = self.weight.to(x.dtype).view(w, s, w, s).permute(1, 0, 3, 2)  # (s, w, s', w')
            eye = torch.eye(h, dtype=x.dtype, device=x.device)
            m = torch.einsum("awbv,hk->ahwbkv", w4, eye)
        return m.reshape(1, 1, s * n, s * n)

    def offset(self, x: Tensor) -> Tensor | None:
        if self.bias is None:
            return None
        h, w = self.hw
        s = self.channel_block
        b = self.bias.to(x.dtype)
        if self.axis == "h":
            per = b.view(h, s).t()[:, :, None].expand(s, h, w)  # (S, H, W)
        else:
            per = b.view(w, s).t()[:, None, :].expand(s, h, w)
        return per.repeat(self.segment_dim, 1, 1).reshape(1, self.dim, h * w)
