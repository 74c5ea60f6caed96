"""Depthwise convolution as a static affinity: a banded Toeplitz matrix per channel."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from affinity.errors import ConfigError, check
from affinity.ops._common import PADDINGS, check_map, source_index
from affinity.ops.base import Affinity, register_affinity
from affinity.ops.params import BOOL, Inert, Param, at_least, odd, one_of, optional

#: How S kernel sets map onto C channels: ``consecutive`` (channel c uses set c // (C/S), as
#: heads split channels) or ``interleaved`` (set c mod S: RepMLPNet's released code reshapes
#: its (…, C, h, w) partitions to (-1, S, h, w) before its grouped conv and grouped FC).
SHARE_LAYOUTS = ("consecutive", "interleaved")


def channel_sets(channels: int, sets: int, layout: str, device: torch.device | None = None) -> Tensor:
    """The kernel set each channel uses, (C,) long."""
    c = torch.arange(channels, device=device)
    return c // (channels // sets) if layout == "consecutive" else c % sets


@register_affinity("dwconv")
class DepthwiseConv(Affinity):
    """Depthwise convolution (Container, Gao et al. NeurIPS 2021: A_static as a conv).

    ``out[c, i] = Σ_j A_c[i, j] · v[c, j] (+ bias_c)`` where ``A_c`` is the banded Toeplitz
    matrix of channel c's kernel (entry at the token offset each tap reads), with the
    padding mode folded in: for ``reflect``, ``replicate`` and ``circular`` the taps that
    fall outside the map add onto the mirrored, edge or wrapped token. Output size equals
    input size ('same'). With ``share=S < C``, S kernels each serve C/S channels (RepMLP's
    local conv branches, ``nn.Conv2d(S, S, k, groups=S)``; see ``share_layout``).
    Initialised as ``nn.Conv2d`` (Kaiming uniform, a=√5).

    Args:
        dim: channels of ``v``.
        hw: the map size, optional; when given, padding limits are checked here.
        kernel_size: odd k ≥ 1.
        dilation: ≥ 1.
        padding: ``zero`` | ``circular`` | ``reflect`` | ``replicate``.
        bias: a per-kernel-set bias (then ``offset()`` returns it).
        share: number of kernel sets S (divides ``dim``); default ``dim`` (depthwise).
        share_layout: ``consecutive`` (default) or ``interleaved`` (RepMLPNet's layout).
    """

    paper = "Depthwise conv (Container, Gao et al., NeurIPS 2021): A_static = banded Toeplitz of the kernel"

    params = (
        Param("kernel_size", 3, odd(), "side k of the kernel"),
        Param("dilation", 1, at_least(1), "spacing of the kernel's taps"),
        Param("padding", "zero", one_of(PADDINGS), "what the taps read outside the map"),
        Param("bias", False, BOOL, "a bias per kernel set (the affinity's offset)"),
        Param(
            "share",
            None,
            optional(at_least(1), "dim: depthwise"),
            "kernel sets S, each serving dim/S channels (RepMLP); divides dim",
            search=False,
        ),
        Param(
            "share_layout",
            "consecutive",
            one_of(SHARE_LAYOUTS),
            "which channels a kernel set serves",
            search=False,
        ),
    )
    inert = (
        Inert(
            ("dilation", "padding"), lambda p: p["kernel_size"] == 1, "a 1x1 kernel reads its own token only"
        ),
    )

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        p = self.hparams
        self.kernel_size: int = p["kernel_size"]
        self.dilation: int = p["dilation"]
        self.padding: str = p["padding"]
        self.share: int = self.dim if p["share"] is None else p["share"]
        check(self.dim % self.share == 0, "share", p["share"], f"a divisor of dim={self.dim}")
        self.share_layout: str = p["share_layout"]
        bias = p["bias"]
        self.pad = (self.kernel_size // 2) * self.dilation
        k = self.kernel_size
        self.weight = nn.Parameter(torch.empty(self.share, 1, k, k))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        self.affine = bool(bias)
        if bias:
            bound = 1 / math.sqrt(k * k)
            self.bias: nn.Parameter | None = nn.Parameter(torch.empty(self.share).uniform_(-bound, bound))
        else:
            self.bias = None
        self._sets: Tensor
        self.register_buffer("_sets", channel_sets(self.dim, self.share, self.share_layout), persistent=False)
        if self.given_hw is not None:
            self._check_size(*self.given_hw)

    def _check_size(self, h: int, w: int) -> None:
        limit = {"reflect": ("<", min(h, w) - 1), "circular": ("<=", min(h, w))}.get(self.padding)
        if limit is not None and self.pad > limit[1]:
            raise ConfigError(
                f"kernel_size={self.kernel_size}, dilation={self.dilation} with padding={self.padding!r} "
                f"is not allowed on a {h}x{w} map: needs (kernel_size//2)*dilation={self.pad} "
                f"{limit[0]} {min(h, w)}"
            )

    def _per_channel(self, t: Tensor) -> Tensor:
        return t if self.share == self.dim else t[self._sets]

    def forward(self, v: Tensor, x: Tensor | None = None) -> Tensor:
        check_map(v, self.dim, self.name)
        self._check_size(v.shape[2], v.shape[3])
        weight = self._per_channel(self.weight)  # (C, 1, k, k)
        bias = None if self.bias is None else self._per_channel(self.bias)
        if self.kernel_size == 1:
            # a per-channel scale; as a grouped conv, single-threaded CPU torch runs it as C
            # separate 1×1 convolutions (RepMLPNet's k=1 branches: ~3,000 calls a forward)
            out = v * weight.view(1, self.dim, 1, 1)
            return out if bias is None else out + bias.view(1, self.dim, 1, 1)
        if self.padding == "zero" or self.pad == 0:
            return F.conv2d(v, weight, bias, padding=self.pad, dilation=self.dilation, groups=self.dim)
        v = F.pad(v, (self.pad,) * 4, mode=self.padding)
        return F.conv2d(v, weight, bias, dilation=self.dilation, groups=self.dim)

    def materialize(self, x: Tensor) -> Tensor:
        h, w = x.shape[2], x.shape[3]
        self._check_size(h, w)
        n, k, c = h * w, self.kernel_size, self.kernel_size // 2
        rows_h = torch.arange(h, device=x.device)
        rows_w = torch.arange(w, device=x.device)
        rows = torch.arange(n, device=x.device)
        flat = torch.zeros(self.share, n * n, dtype=x.dtype, device=x.device)
        kernel = self.weight[:, 0].to(x.dtype)  # (S, k, k)
        for kh in range(k):
            # conv2d is a cross-correlation: tap kh reads in[h + (kh - c)·d], a shift by −(kh − c)·d
            src_h = source_index(rows_h, -(kh - c) * self.dilation, h, self.padding)
            for kw in range(k):
                src_w = source_index(rows_w, -(kw - c) * self.dilation, w, self.padding)
                src = (src_h[:, None] * w + src_w[None, :]).reshape(n)
                valid = ((src_h[:, None] >= 0) & (src_w[None, :] >= 0)).reshape(n)
                idx = rows[valid] * n + src[valid]
                vals = kernel[:, kh, kw][:, None].expand(self.share, idx.numel())
                flat = flat.index_add(1, idx, vals)
        a = flat.view(self.share, n, n)
        return self._per_channel(a).unsqueeze(0) if self.share > 1 else a.unsqueeze(0)

    def offset(self, x: Tensor) -> Tensor | None:
        if self.bias is None:
            return None
        n = x.shape[2] * x.shape[3]
        b = self.bias.to(x.dtype)
        b = self._per_channel(b) if self.share > 1 else b
        return b[None, :, None].expand(1, -1, n)
