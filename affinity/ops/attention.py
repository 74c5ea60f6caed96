"""Multi-head self-attention as a dynamic affinity, global or in (shifted) Swin windows."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from affinity.errors import ConfigError, check
from affinity.ops._common import check_map
from affinity.ops.base import Affinity, register_affinity
from affinity.ops.params import BOOL, Param, at_least, optional


@register_affinity("attention")
class Attention(Affinity):
    """Self-attention, ``A(X) = softmax(Q Kᵀ / √d + B)`` per head (Vaswani et al. 2017, eq. 1;
    Swin, Liu et al. ICCV 2021, eq. 4, with relative position bias B; Container's A(X)).

    The values come from the mixer (its ``proj_in`` is ``W_v``); this affinity owns the
    query/key projection ``qk = Linear(dim_x, 2·dim)`` applied per token to the block input
    ``x``, so parameters and FLOPs equal a standard qkv projection. Head h serves channels
    ``[h·d, (h+1)·d)`` of ``v``, d = dim / heads. The fast path is
    ``scaled_dot_product_attention``; ``materialize`` returns the true N×N token affinity of
    each channel (its head's matrix).

    Windows (Swin): tokens attend within non-overlapping ``window_size²`` windows; with
    ``shift_size`` > 0 the map is rolled by ``−shift_size`` first and Swin's region mask keeps
    tokens that wrapped around apart (masked entries are exactly 0 here: −inf, where Swin adds
    −100, the same up to e^−100). The map's H and W must be multiples of ``window_size``
    (no padding, so that every entry of the N×N affinity is a real token pair); as Swin, a map
    that is exactly one window drops the shift. ``rel_pos_bias`` adds Swin's learned
    ``((2w−1)², heads)`` table inside the softmax, a static term of the dynamic affinity.
    Global attention accepts any map, including a ``1 × N`` sequence with a class token.
    Initialised as timm's ViT/Swin: truncated normal (std 0.02) weights, zero biases.

    Args:
        dim: channels of ``v`` (heads·d).
        hw: the map size, optional; when given, window constraints are checked here.
        heads: number of heads (divides ``dim``).
        qkv_bias: bias on the query/key projection.
        dim_x: channels of ``x`` (default ``dim``).
        window_size: window side w, or None for global attention.
        shift_size: cyclic shift for shifted windows, 0 ≤ shift_size < window_size.
        rel_pos_bias: Swin's relative position bias (windows only).
    """

    dynamic = True
    channels_last = True
    paper = (
        "Self-attention (Vaswani 2017 eq. 1; Swin, Liu et al. 2021, eq. 4): A(X) = softmax(QK^T/sqrt(d) + B)"
    )

    params = (
        Param("heads", 1, at_least(1), "attention heads; divides the stage's dim"),
        Param("window_size", None, optional(at_least(1), "global attention"), "side of Swin's windows"),
        Param("qkv_bias", True, BOOL, "biases on the query/key projection"),
        Param("rel_pos_bias", False, BOOL, "Swin's learned relative position bias (windows only)"),
        Param("shift_size", 0, at_least(0), "Swin's window shift, < window_size", search=False),
        Param("dim_x", None, optional(at_least(1), "dim"), "channels of the block input x", search=False),
    )

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        p = self.hparams
        heads, shift_size, rel_pos_bias = p["heads"], p["shift_size"], p["rel_pos_bias"]
        self.heads: int = heads
        check(self.dim % self.heads == 0, "heads", heads, f"a divisor of dim={self.dim}")
        self.head_dim = self.dim // self.heads
        self.dim_x: int = self.dim if p["dim_x"] is None else p["dim_x"]
        self.window_size: int | None = p["window_size"]
        self.shift_size: int = shift_size
        if self.window_size is None:
            check(shift_size == 0, "shift_size", shift_size, "0 without window_size (global attention)")
            check(not rel_pos_bias, "rel_pos_bias", rel_pos_bias, "False without window_size")
        else:
            check(
                shift_size < self.window_size,
                "shift_size",
                shift_size,
                f"0 <= shift_size < window_size={self.window_size}",
            )
        self.qk = nn.Linear(self.dim_x, 2 * self.dim, bias=p["qkv_bias"])
        nn.init.trunc_normal_(self.qk.weight, std=0.02)
        if self.qk.bias is not None:
            nn.init.zeros_(self.qk.bias)
        self._masks: dict[tuple[object, ...], tuple[Tensor | None, Tensor]] = {}
        self._orders: dict[tuple[object, ...], tuple[Tensor, Tensor]] = {}
        self.rel_pos_table: nn.Parameter | None = None
        if rel_pos_bias:
            w = self.window_size
            assert w is not None
            self.rel_pos_table = nn.Parameter(torch.empty((2 * w - 1) ** 2, self.heads))
            nn.init.trunc_normal_(self.rel_pos_table, std=0.02)
        if self.given_hw is not None:
            ws, shift = self._window_shift(*self.given_hw)
            if ws:
                self._window_order(*self.given_hw, ws, shift, torch.device("cpu"))

    def _window_shift(self, h: int, w: int) -> tuple[int, int]:
        """(window, shift) for an h×w map; ConfigError when the map cannot be windowed."""
        ws = self.window_size
        if ws is None:
            return 0, 0
        if ws > h or ws > w:
            raise ConfigError(
                f"window_size={ws} is not allowed on a {h}x{w} map: at most the smaller side {min(h, w)}"
            )
        if h % ws or w % ws:
            raise ConfigError(
                f"window_size={ws} is not allowed on a {h}x{w} map: H and W must be multiples of it "
                "(no padding)"
            )
        shift = 0 if (h == ws and w == ws) else self.shift_size
        return ws, shift

    def _check_x(self, v: Tensor, x: Tensor) -> None:
        if x.dim() != 4 or x.shape[1] != self.dim_x or x.shape[0] != v.shape[0] or x.shape[2:] != v.shape[2:]:
            raise ConfigError(
                f"attention: x shape {tuple(x.shape)} is not allowed: expected "
                f"({v.shape[0]}, {self.dim_x}, {v.shape[2]}, {v.shape[3]})"
            )

    def forward(self, v: Tensor, x: Tensor | None = None) -> Tensor:
        check_map(v, self.dim, self.name)
        x = v if x is None else x
        self._check_x(v, x)
        order = self._token_order(v)
        qk = self.qk(_tokens(x, order))  # (B, N, 2C), in window order with windows
        c = self.dim
        return self._attend(qk[..., :c], qk[..., c:], _tokens(v, order), v.shape[2], v.shape[3])

    def forward_with_values(self, x: Tensor, value: nn.Conv2d) -> Tensor:
        """``forward(value(x), x)`` for a 1×1 value projection ``value`` (dim_x -> dim): the
        values, queries and keys from one (N, dim_x) @ (dim_x, 3C) product (timm's qkv), which
        runs faster than the 2C and C products apart and gives the same numbers."""
        if value.weight.shape != (self.dim, self.dim_x, 1, 1):
            raise ConfigError(
                f"attention: value projection of shape {tuple(value.weight.shape)} is not allowed: "
                f"expected ({self.dim}, {self.dim_x}, 1, 1)"
            )
        check_map(x, self.dim_x, self.name)
        weight = torch.cat([self.qk.weight, value.weight.flatten(1)])  # (3C, dim_x)
        bias = None
        if self.qk.bias is not None or value.bias is not None:  # a missing one as zeros
            parts = ((self.qk.bias, 2 * self.dim), (value.bias, self.dim))
            bias = torch.cat([weight.new_zeros(n) if t is None else t for t, n in parts])
        qkv = F.linear(_tokens(x, self._token_order(x)), weight, bias)  # (B, N, 3C)
        c = self.dim
        return self._attend(qkv[..., :c], qkv[..., c : 2 * c], qkv[..., 2 * c :], x.shape[2], x.shape[3])

    def _token_order(self, like: Tensor) -> Tensor | None:
        """The gather order of the windows (None for global attention)."""
        ws, shift = self._window_shift(like.shape[2], like.shape[3])
        return self._window_order(like.shape[2], like.shape[3], ws, shift, like.device)[0] if ws else None

    def _attend(self, q: Tensor, k: Tensor, v: Tensor, h: int, w: int) -> Tensor:
        """Attention of (B, N, C) queries, keys and values (in window order with windows) of
        an h×w map; returns the channels-last (B, C, H, W) map."""
        b, n, c = v.shape
        nh, d = self.heads, self.head_dim
        ws, shift = self._window_shift(h, w)
        if not ws:
            q, k, v = (t.view(b, n, nh, d).transpose(1, 2) for t in (q, k, v))  # (B, nh, N, d)
            out = F.scaled_dot_product_attention(q, k, v)  # (B, nh, N, d)
            return out.transpose(1, 2).reshape(b, h, w, c).permute(0, 3, 1, 2)  # channels-last
        nw, size = n // (ws * ws), ws * ws
        mask = self._window_mask(h, w, ws, shift, v)  # (nW or 1, nh or 1, L, L) or None
        if mask is not None and (mask.shape[0] > 1 or torch.jit.is_tracing()):
            # 4-D attention (ONNX export takes no other): windows join the batch; a mask of all
            # windows (no shift) broadcasts without a copy outside traces (the same numbers)
            mask = mask.expand(b, nw, -1, -1, -1).flatten(0, 1)  # (B·nW, nh or 1, L, L)
        q, k, v = (t.reshape(b * nw, size, nh, d).transpose(1, 2) for t in (q, k, v))  # (B·nW, nh, L, d)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # (B·nW, nh, L, d)
        # back to map order (the inverse gather: unpartition, then roll by +shift)
        inverse = self._window_order(h, w, ws, shift, v.device)[1]
        out = out.transpose(1, 2).reshape(b, n, c).index_select(1, inverse)
        return out.view(b, h, w, c).permute(0, 3, 1, 2)  # channels-last

    def _window_order(
        self, h: int, w: int, ws: int, shift: int, device: torch.device
    ) -> tuple[Tensor, Tensor]:
        """(nW·L,) token indices of the windows of the map rolled by −shift (row-major windows,
        row-major inside each), and the inverse permutation; built once per map."""
        key = (h, w, ws, shift, device)
        if key not in self._orders:  # built by moves only (fvcore counts them zero on purpose)
            with torch.inference_mode(False):  # a later training step saves them for backward
                tokens = torch.arange(h * w, device=device)
                rolled = torch.roll(tokens.view(1, h, w, 1), (-shift, -shift), (1, 2))
                order = _windows(rolled, ws).reshape(-1)
                # the window position of each map token: unpartition, then roll by +shift
                grid = tokens.view(h // ws, w // ws, ws, ws).permute(0, 2, 1, 3).reshape(h, w)
                self._orders[key] = order, torch.roll(grid, (shift, shift), (0, 1)).reshape(-1)
        return self._orders[key]

    def _rel_index(self, ws: int, device: torch.device) -> Tensor:
        """(L, L) index into the (2w−1)² table, as Swin's relative_position_index."""
        coords = torch.stack(
            torch.meshgrid(torch.arange(ws, device=device), torch.arange(ws, device=device), indexing="ij")
        ).flatten(1)  # (2, L)
        rel = coords[:, :, None] - coords[:, None, :] + (ws - 1)  # (2, L, L)
        return rel[0] * (2 * ws - 1) + rel[1]

    def _window_mask(self, h: int, w: int, ws: int, shift: int, like: Tensor) -> Tensor | None:
        """Additive mask (nW or 1, nh or 1, L, L): Swin's region mask (−inf) + relative bias."""
        key = (h, w, ws, shift, like.device, like.dtype)
        if key not in self._masks:  # index and region mask depend on the map only: build once
            with torch.inference_mode(False):  # (as the window order)
                self._masks[key] = self._static_mask(h, w, ws, shift, like)
        mask, idx = self._masks[key]
        if self.rel_pos_table is not None:
            bias = self.rel_pos_table.to(like.dtype)[idx].permute(2, 0, 1)[None]  # (1, nh, L, L)
            mask = bias if mask is None else mask + bias
        return mask

    def _static_mask(self, h: int, w: int, ws: int, shift: int, like: Tensor) -> tuple[Tensor | None, Tensor]:
        """Swin's region mask (nW, 1, L, L) with −inf (None without shift), and the bias index (L, L)."""
        mask: Tensor | None = None
        if shift:
            labels = _region_labels(h, w, ws, shift, like.device)  # (H, W) on the rolled grid
            lw = _windows(labels[None, :, :, None], ws)[0, :, :, 0]  # (nW, L)
            same = lw[:, :, None] == lw[:, None, :]
            mask = torch.zeros(same.shape, dtype=like.dtype, device=like.device)
            mask = mask.masked_fill(~same, float("-inf"))[:, None]  # (nW, 1, L, L)
        return mask, self._rel_index(ws, like.device)

    def materialize(self, x: Tensor) -> Tensor:
        b, _, h, w = x.shape
        if x.dim() != 4 or x.shape[1] != self.dim_x:
            raise ConfigError(
                f"attention: x shape {tuple(x.shape)} is not allowed: expected (B, {self.dim_x}, H, W)"
            )
        n, nh, d = h * w, self.heads, self.head_dim
        qk = self.qk(x.flatten(2).transpose(1, 2))  # (B, N, 2C)
        q, k = qk.view(b, n, 2, nh, d).permute(2, 0, 3, 1, 4)  # (B, nh, N, d)
        logits = (q @ k.transpose(-1, -2)) * d**-0.5  # (B, nh, N, N)
        if self.window_size is not None:
            ws, shift = self._window_shift(h, w)
            # each token's position on the rolled grid (Swin rolls by −shift before windowing)
            ph = (torch.arange(h, device=x.device) - shift) % h
            pw = (torch.arange(w, device=x.device) - shift) % w
            gh, gw = torch.meshgrid(ph, pw, indexing="ij")
            gh, gw = gh.reshape(n), gw.reshape(n)
            win = (gh // ws) * (w // ws) + gw // ws
            allowed = win[:, None] == win[None, :]
            if shift:
                labels = _region_labels(h, w, ws, shift, x.device)[gh, gw]
                allowed &= labels[:, None] == labels[None, :]
            if self.rel_pos_table is not None:
                ih, iw = gh % ws, gw % ws
                rel = (ih[:, None] - ih[None, :] + ws - 1) * (2 * ws - 1) + (
                    iw[:, None] - iw[None, :] + ws - 1
                )
                logits = logits + self.rel_pos_table.to(logits.dtype)[rel].permute(2, 0, 1)[None]
            logits = logits.masked_fill(~allowed, float("-inf"))
        attn = logits.softmax(-1)  # (B, nh, N, N)
        return attn.repeat_interleave(d, dim=1)  # (B, C, N, N)


def _tokens(t: Tensor, order: Tensor | None) -> Tensor:
    """(B, C, H, W) -> (B, N, C) tokens (a free view of a channels-last map), gathered in
    ``order`` when given: Swin's roll by −shift and window partition as one gather."""
    b, c, h, w = t.shape
    flat = t.permute(0, 2, 3, 1).reshape(b, h * w, c)
    return flat if order is None else flat.index_select(1, order)


def _windows(t: Tensor, ws: int) -> Tensor:
    """(B, H, W, C) -> (B, nW, L, C), windows in row-major order, L = ws²."""
    b, h, w, c = t.shape
    t = t.view(b, h // ws, ws, w // ws, ws, c).permute(0, 1, 3, 2, 4, 5)
    return t.reshape(b, (h // ws) * (w // ws), ws * ws, c)


def _region_labels(h: int, w: int, ws: int, shift: int, device: torch.device) -> Tensor:
    """Swin's img_mask on the rolled grid: slices (0, −ws), (−ws, −shift), (−shift, end) per axis."""

    def axis(size: int) -> Tensor:
        p = torch.arange(size, device=device)
        return (p >= size - ws).long() + (p >= size - shift).long()

    return axis(h)[:, None] * 3 + axis(w)[None, :]
