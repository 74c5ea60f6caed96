"""Dense static token affinities: ResMLP's token FC, MLP-Mixer's token-MLP layers, RepMLP's FC."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from affinity.errors import ConfigError, check
from affinity.ops.base import Affinity, register_affinity
from affinity.ops.conv import SHARE_LAYOUTS, channel_sets
from affinity.ops.params import BOOL, Param, at_least, one_of, optional


@register_affinity("token_mlp")
class TokenMLP(Affinity):
    """A learned dense token matrix, ``Linear(N_in, N_out)`` across tokens.

    ResMLP (Touvron et al., TPAMI 2022, eq. 1, ``A = Linear(N, N)``): the bias enters as
    an affine offset ``b_i`` added to every channel, ``out[c, i] = Σ_j A_ij v[c, j] + b_i``
    (``offset()`` returns it). MLP-Mixer (Tolstikhin et al. 2021, eq. 1) is two such layers,
    N→D_S→N, with a GELU between: a serial mixer of two ``token_mlp`` branches, each with
    its own matrix. ``heads=S > 1`` gives S matrices, each serving C/S channels: RepMLP's
    grouped FC (Ding et al. 2021, ``share_layout='interleaved'`` as its code) and
    Container-PAM's per-head static affinity (Gao et al. 2021,
    ``consecutive``). Initialised as timm's MLP-Mixer/ResMLP (``_init_weights``, non-flax):
    Xavier-uniform weights per matrix, zero bias.

    Layout: the input map has ``in_tokens`` positions (the original ``hw`` map, or a
    ``(B, C, 1, D_S)`` row for Mixer's second layer); the output is ``(B, C, H, W)`` when
    ``out_tokens == H·W`` of ``hw``, else ``(B, C, 1, out_tokens)``.

    Args:
        dim: channels of ``v``.
        hw: the original map's (H, W); required (the matrix is tied to the token count).
        heads: number of matrices S (divides ``dim``); default 1, shared by all channels.
        share: alias of ``heads`` (RepMLP's "share sets").
        share_layout: ``consecutive`` (channel c uses matrix c // (C/S)) or ``interleaved``
            (c mod S, RepMLPNet's released code).
        bias: the affine offset ``b`` (one per matrix and output token).
        in_tokens: tokens read (default H·W).
        out_tokens: tokens written (default H·W).
    """

    paper = "Token MLP (ResMLP, Touvron et al., TPAMI 2022, eq. 1; MLP-Mixer eq. 1): A = Linear(N_in, N_out)"

    layout: ClassVar[Mapping[str, Any]] = {"proj_in": False, "proj_out": False}
    params = (
        Param("bias", True, BOOL, "the affine offset b, one per matrix and output token"),
        Param("heads", 1, at_least(1), "matrices S, each serving dim/S channels; divides dim", search=False),
        Param("share", None, optional(at_least(1), "heads"), "alias of heads (RepMLP)", search=False),
        Param(
            "share_layout",
            "consecutive",
            one_of(SHARE_LAYOUTS),
            "which channels a matrix serves",
            search=False,
        ),
        Param("in_tokens", None, optional(at_least(1), "H·W"), "tokens read", search=False),
        Param("out_tokens", None, optional(at_least(1), "H·W"), "tokens written", search=False),
    )

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        p = self.hparams
        self.hw: tuple[int, int] = self.required_hw()  # the matrix is tied to the token count
        n = self.hw[0] * self.hw[1]
        heads, share = p["heads"], p["share"]
        if share is not None:
            check(heads in (1, share), "share", share, f"equal to heads={heads} when both are given")
            heads = share
        self.heads: int = heads
        check(self.dim % self.heads == 0, "heads", heads, f"a divisor of dim={self.dim}")
        self.share_layout: str = p["share_layout"]
        self.in_tokens: int = n if p["in_tokens"] is None else p["in_tokens"]
        self.out_tokens: int = n if p["out_tokens"] is None else p["out_tokens"]
        bias = p["bias"]
        self.affine = bool(bias)
        self.weight = nn.Parameter(torch.empty(self.heads, self.out_tokens, self.in_tokens))
        for s in range(self.heads):
            nn.init.xavier_uniform_(self.weight[s])
        self.bias: nn.Parameter | None = (
            nn.Parameter(torch.zeros(self.heads, self.out_tokens)) if bias else None
        )
        self._sets: Tensor
        self.register_buffer("_sets", channel_sets(self.dim, self.heads, self.share_layout), persistent=False)

    def out_hw(self, h: int, w: int) -> tuple[int, int]:
        return self.hw if self.out_tokens == self.hw[0] * self.hw[1] else (1, self.out_tokens)

    def _check_input(self, v: Tensor) -> None:
        if v.dim() != 4 or v.shape[1] != self.dim or v.shape[2] * v.shape[3] != self.in_tokens:
            raise ConfigError(
                f"token_mlp: input shape {tuple(v.shape)} is not allowed: expected (B, {self.dim}, H, W) "
                f"with H*W = in_tokens = {self.in_tokens}"
            )

    def forward(self, v: Tensor, x: Tensor | None = None) -> Tensor:
        self._check_input(v)
        b, c = v.shape[0], v.shape[1]
        flat = v.reshape(b, c, self.in_tokens)  # (B, C, N_in)
        if self.heads == 1:
            out = F.linear(flat, self.weight[0], None if self.bias is None else self.bias[0])
        else:
            s, g = self.heads, c // self.heads
            if self.share_layout == "consecutive":
                grouped = flat.reshape(b, s, g, self.in_tokens)
            else:
                grouped = flat.reshape(b, g, s, self.in_tokens).transpose(1, 2)
            # one (B·C/S, N_in) @ (N_in, N_out) product per set: a (B, S, ...) @ (S, ...) product
            # would broadcast, i.e. copy, the S weight matrices B times
            rows = grouped.transpose(0, 1).reshape(s, b * g, self.in_tokens)
            out = torch.bmm(rows, self.weight.transpose(1, 2))  # (S, B·C/S, N_out)
            out = out.reshape(s, b, g, self.out_tokens).transpose(0, 1)  # (B, S, C/S, N_out)
            if self.bias is not None:
                out = out + self.bias[:, None, :]
            if self.share_layout == "interleaved":
                out = out.transpose(1, 2)
            out = out.reshape(b, c, self.out_tokens)
        return out.reshape(b, c, *self.out_hw(v.shape[2], v.shape[3]))

    def _per_channel(self, t: Tensor) -> Tensor:
        return t if self.heads == 1 else t[self._sets]

    def materialize(self, x: Tensor) -> Tensor:
        return self._per_channel(self.weight.to(x.dtype)).unsqueeze(0)

    def offset(self, x: Tensor) -> Tensor | None:
        if self.bias is None:
            return None
        return self._per_channel(self.bias.to(x.dtype)).unsqueeze(0)
