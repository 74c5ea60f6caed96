"""The norm and activation factories every layer uses, in the (B, C, H, W) layout.

One copy for the whole package: the mixers (``affinity.ops.mixer``) and the models
(``affinity.models``) both build their norms and activations here.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from affinity.errors import ConfigError

#: norm names ``make_norm`` builds (``None``: identity)
NORM_KINDS = ("layernorm", "groupnorm", "batchnorm", "affine")
#: activation names ``make_act`` builds (``None``: identity)
ACT_KINDS = ("gelu", "relu")


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of a (B, C, H, W) map (each position normalised alone)."""

    def forward(self, x: Tensor) -> Tensor:
        x = x.permute(0, 2, 3, 1)  # (B, H, W, C)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


def is_channels_last(x: Tensor) -> bool:
    """True when a (B, C, H, W) map is laid out channels-last (``torch.channels_last``: the
    (B, H, W, C) view is contiguous), as after ``LayerNorm2d`` or a ``Conv1x1`` on such a map."""
    return x.dim() == 4 and x.permute(0, 2, 3, 1).is_contiguous()


class Conv1x1(nn.Conv2d):
    """A 1×1 convolution, ``nn.Conv2d(in_channels, out_channels, 1)``: channel mixing at every
    position.

    On a channels-last map it runs as one ``F.linear`` over the channels and returns a
    channels-last map. As a convolution, single-threaded CPU torch copies such a map to NCHW
    and runs one product per image (``_slow_conv2d_forward``), and the next token-layout op
    (a norm, a linear, attention) copies it back. Other maps take the convolution.

    Args:
        in_channels: channels in.
        out_channels: channels out.
        bias: a bias per output channel.
    """

    def __init__(self, in_channels: int, out_channels: int, bias: bool = True) -> None:
        super().__init__(in_channels, out_channels, 1, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        if not is_channels_last(x):
            return super().forward(x)
        y = F.linear(x.permute(0, 2, 3, 1), self.weight.flatten(1), self.bias)  # (B, H, W, C')
        return y.permute(0, 3, 1, 2)


class Affine(nn.Module):
    """ResMLP's norm replacement: per-channel ``α·x + β`` (Touvron et al. 2022, eq. 1).

    Args:
        dim: channels.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.ones(dim))
        self.beta = nn.Parameter(torch.zeros(dim))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.alpha[:, None, None] + self.beta[:, None, None]


def make_norm(kind: str | None, dim: int, eps: float = 1e-5) -> nn.Module:
    """The norm ``kind`` over ``dim`` channels of a (B, C, H, W) map (None: identity).

    Args:
        kind: ``layernorm`` (over channels) | ``groupnorm`` (one group, as AS-MLP's code) |
            ``batchnorm`` | ``affine`` (ResMLP) | None.
        dim: channels.
        eps: epsilon of the normalising kinds.
    """
    if kind is None:
        return nn.Identity()
    if kind == "layernorm":
        return LayerNorm2d(dim, eps=eps)
    if kind == "groupnorm":
        return nn.GroupNorm(1, dim, eps=eps)
    if kind == "batchnorm":
        return nn.BatchNorm2d(dim, eps=eps)
    if kind == "affine":
        return Affine(dim)
    raise ConfigError(f"norm={kind!r} is not allowed: one of {', '.join(NORM_KINDS)}, None")


class GELU(nn.GELU):
    """``nn.GELU`` that computes a channels-last map on its (B, H, W, C) view.

    torch computes GELU of a contiguous tensor with oneDNN's kernel and of any other, a
    channels-last (B, C, H, W) map among them, with its own, which rounds differently (up to
    4.8e-7 at unit scale) and on an AVX2 EPYC took 1.8× as long (2.22 against 1.25 ns an
    element, one thread). On the dense view a channels-last map gets oneDNN's kernel and the
    numbers the same map gives in NCHW, as the papers' code runs it.
    """

    def forward(self, x: Tensor) -> Tensor:
        dense = _dense(x)
        out = F.gelu(dense, approximate=self.approximate)
        return out if dense is x else out.permute(0, 3, 1, 2)


def _dense(x: Tensor) -> Tensor:
    """A channels-last (B, C, H, W) map's contiguous (B, H, W, C) view; any other tensor as is."""
    return x.permute(0, 2, 3, 1) if is_channels_last(x) and not x.is_contiguous() else x


def hooked(module: nn.Module) -> bool:
    """True when a forward hook would see ``module``'s calls (its own or a global one): a fast
    path that computes its output without calling it must step aside."""
    hooks = nn.modules.module
    return bool(
        module._forward_hooks
        or module._forward_pre_hooks
        or hooks._global_forward_hooks
        or hooks._global_forward_pre_hooks
    )


def act_in_place(act: nn.Module, x: Tensor, source: nn.Module) -> Tensor:
    """``act(x)`` written over ``x`` when autograd is off and no trace is recorded; ``x`` must
    be a fresh tensor that a layer inside ``source`` returned (no view of anything else).

    The same numbers as ``act(x)``: only the output's memory differs. A fresh output as large
    as a channel MLP's hidden tensor is mapped and page-faulted again on each forward, which
    made GELU cost twice its in-place time (deit_s's MLP, batch 8, one thread: 45.6 -> 40.2
    ms). With autograd on, the backward needs the input; a trace (fvcore) keeps the plain op,
    and hooks (NASWOT's) the module's call.
    """
    if torch.is_grad_enabled() or torch.jit.is_tracing() or any(hooked(m) for m in source.modules()):
        return act(x)  # hooks see the activation's call, and may hold the layer's output
    if isinstance(act, nn.GELU):
        torch.ops.aten.gelu_(_dense(x), approximate=act.approximate)  # oneDNN's kernel (see GELU)
        return x
    if isinstance(act, nn.ReLU):
        return torch.relu_(x)
    return act(x)


def make_act(kind: str | None) -> nn.Module:
    """The activation ``kind`` (None: identity)."""
    if kind is None:
        return nn.Identity()
    if kind == "gelu":
        return GELU()
    if kind == "relu":
        return nn.ReLU()
    raise ConfigError(f"act={kind!r} is not allowed: one of {', '.join(ACT_KINDS)}, None")
