"""Layers around the token mixers, all in the (B, C, H, W) layout: LayerScale, DropPath,
the channel MLP, RepMLPNet's global perceptron, and the patch embeddings (the norms and
activations are ``affinity.ops.layers``', shared with the mixers).

None of these mixes tokens: every token mixer is a ``ContextAggregation`` (affinity.ops).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from affinity.ops.layers import Affine, Conv1x1, LayerNorm2d, act_in_place, make_act, make_norm

__all__ = [
    "Affine",
    "ChannelMlp",
    "ClassTokenPos",
    "ConvBnRelu",
    "DropPath",
    "GlobalPerceptron",
    "LayerNorm2d",
    "LayerScale",
    "PatchEmbed",
    "PatchMerging",
    "make_act",
    "make_norm",
]


class LayerScale(nn.Module):
    """Per-channel residual scale γ (CaiT / ResMLP), initialised at ``init``.

    Args:
        dim: channels.
        init: initial value of every γ.
    """

    def __init__(self, dim: int, init: float) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), float(init)))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gamma[:, None, None]


class DropPath(nn.Module):
    """Stochastic depth: drop the whole residual branch per sample while training.

    Args:
        rate: drop probability.
    """

    def __init__(self, rate: float) -> None:
        super().__init__()
        self.rate = rate

    def forward(self, x: Tensor) -> Tensor:
        if self.rate == 0.0 or not self.training:
            return x
        keep = 1.0 - self.rate
        mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"rate={self.rate}"


class ChannelMlp(nn.Module):
    """The channel MLP ``fc2(act(fc1(x)))``, applied at every position (channel mixing only).

    Without norms the two layers are ``nn.Linear`` on the channels-last view (faster than
    1×1 convolutions on CPU); with norms (RepMLPNet's conv-BN pairs) they are 1×1 convs
    followed by BatchNorm, which ``reparameterize`` folds.

    Args:
        dim: channels in and out.
        hidden: hidden channels.
        act: ``gelu`` or ``relu``.
        bias: biases on both layers.
        norm: a norm after each layer (RepMLPNet's conv-BN pairs), or None.
    """

    def __init__(
        self, dim: int, hidden: int, *, act: str = "gelu", bias: bool = True, norm: str | None = None
    ) -> None:
        super().__init__()
        self.channels_last = norm is None
        self.hidden = hidden
        self.fc1: nn.Module = (
            nn.Linear(dim, hidden, bias=bias) if self.channels_last else Conv1x1(dim, hidden, bias=bias)
        )
        self.norm1 = make_norm(norm, hidden)
        self.act = make_act(act)
        self.fc2: nn.Module = (
            nn.Linear(hidden, dim, bias=bias) if self.channels_last else Conv1x1(hidden, dim, bias=bias)
        )
        self.norm2 = make_norm(norm, dim)

    def forward(self, x: Tensor) -> Tensor:
        inference = x.device.type == "cpu" and not (
            torch.is_grad_enabled() or self.training or torch.jit.is_tracing()
        )
        if not inference:
            return self._whole(x)
        if x.numel() // x.shape[1] * self.hidden * x.element_size() > _LARGE_BYTES:
            return self._by_parts(x)
        if (
            not self.channels_last
            and x.shape[0] > 1
            and x.shape[2] * x.shape[3] <= _NARROW_TOKENS
            and x.is_contiguous()
        ):
            # the 1×1 convs as one product over the batch's tokens, not one narrow one per image
            return self._whole(x.contiguous(memory_format=torch.channels_last)).contiguous()
        return self._whole(x)

    def _whole(self, x: Tensor) -> Tensor:
        if self.channels_last:
            return self._tokens(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)  # via (B, H, W, C)
        x = act_in_place(self.act, self.norm1(self.fc1(x)), self)  # (B, hidden, H, W)
        return self.norm2(self.fc2(x))  # (B, C, H, W)

    def _tokens(self, t: Tensor) -> Tensor:
        return self.fc2(act_in_place(self.act, self.fc1(t), self))  # (..., C) -> (..., hidden) -> (..., C)

    def _by_parts(self, x: Tensor) -> Tensor:
        """``_whole(x)`` (eval, without autograd) computed ``_ROWS`` tokens at a time on a
        channels-last map, one image at a time otherwise (1×1 convs and norms): the same
        products row by row (equal up to rounding where the GEMM blocks fewer rows apart)."""
        out = torch.empty_like(x)
        if not self.channels_last:
            for i in range(x.shape[0]):
                out[i : i + 1] = self._whole(x[i : i + 1])
            return out
        t, rows = x.permute(0, 2, 3, 1), out.permute(0, 2, 3, 1)  # (B, H, W, C)
        if not (t.is_contiguous() and rows.is_contiguous()):
            return self._whole(x)
        t, rows = t.reshape(-1, t.shape[-1]), rows.view(-1, t.shape[-1])  # (B·H·W, C)
        for start in range(0, t.shape[0], _ROWS):
            rows[start : start + _ROWS] = self._tokens(t[start : start + _ROWS])
        return out


#: on the CPU, a channel MLP whose hidden activations would take more than this computes them
#: in parts in eval mode without autograd, outside a trace (whose graph would hold one product
#: per part of this batch size); never off the CPU, where each part launches every kernel
#: again. On the CPU a hidden tensor this large is out of the caches between
#: fc1, the activation and fc2, and over glibc's 32 MiB dynamic mmap threshold a fresh mmap
#: page-faulted on every forward. Batch 8, one thread: swin_t / as_mlp_t's first-stage MLP
#: (38 MB) 87 -> 56 ms by 2048-token parts, repmlpnet_t224's (26 MB) 78 -> 41 ms by images;
#: at 13-19 MB (their second stages) parts were 2-20% slower
_LARGE_BYTES = 24 * 2**20
_ROWS = 2048

#: on the CPU, in eval mode without autograd, a batch's NCHW map of at most this many tokens an
#: image goes through a conv-norm channel MLP (RepMLPNet's) channels-last: its 1×1 convs are
#: then one (B·H·W, C) product, where torch's 1×1 conv runs one (C, H·W) product per image,
#: slow when H·W is small. repmlpnet_t224, batch 8, one thread, an AVX2 EPYC, timed in the
#: model: the 7×7 MLP 34.2 -> 26.1 ms a call (medians of 8; minima 0.77×), both conversions
#: included; 14×14 gained nothing clear (0.97× / 1.02×) and 28×28 alone was 23% slower.
#: Equal up to rounding (logits 6.7e-8 apart)
_NARROW_TOKENS = 64


class GlobalPerceptron(nn.Module):
    """RepMLPNet's global perceptron: a per-channel sigmoid gate from the pooled input.

    ``gate = sigmoid(fc2(relu(fc1(avgpool(x)))))``, shape (B, C, 1, 1). It mixes channels of
    one pooled vector, not tokens; the block multiplies the token mixer's output by it
    (Ding et al., CVPR 2022, sec. 3.2).

    Args:
        dim: channels.
        hidden: hidden width (``dim // reduce``).
    """

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(dim, hidden, 1)
        self.fc2 = nn.Conv2d(hidden, dim, 1)

    def forward(self, x: Tensor) -> Tensor:
        g = x.mean(dim=(2, 3), keepdim=True)  # (B, C, 1, 1)
        return torch.sigmoid(self.fc2(F.relu(self.fc1(g))))


class PatchEmbed(nn.Module):
    """p×p patches to ``out_dim`` channels: a stride-p conv [+ act] [+ norm].

    Non-overlapping: a p×p kernel. Overlapping (PoolFormer, CycleMLP): a (2p−1)×(2p−1) kernel
    with padding p//2 (7×7 stride 4 padding 2, 3×3 stride 2 padding 1), the same output size.

    Args:
        in_dim: input channels.
        out_dim: output channels.
        patch_size: p.
        norm: norm after the projection, or None.
        eps: its epsilon.
        overlap: overlapping patches.
        act: activation between the conv and the norm (ConvMixer), or None.
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        patch_size: int,
        *,
        norm: str | None = None,
        eps: float = 1e-5,
        overlap: bool = False,
        act: str | None = None,
    ) -> None:
        super().__init__()
        kernel, pad = (2 * patch_size - 1, patch_size // 2) if overlap else (patch_size, 0)
        self.proj = nn.Conv2d(in_dim, out_dim, kernel, stride=patch_size, padding=pad)
        self.act = nn.Identity() if act is None else make_act(act)
        self.norm = make_norm(norm, out_dim, eps)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(self.act(self.proj(x)))  # (B, out_dim, H/p, W/p)


class PointwiseConv(nn.Sequential):
    """ConvMixer's channel mixing, ``norm(act(pw(x)))``: a 1×1 conv with bias, an activation,
    a norm (Trockman & Kolter 2022, fig. 2; the block adds no residual around it).

    Args:
        dim: channels in and out.
        act: ``gelu`` or ``relu``.
        norm: the norm after the activation.
        eps: its epsilon.
    """

    def __init__(self, dim: int, *, act: str, norm: str | None, eps: float = 1e-5) -> None:
        super().__init__(Conv1x1(dim, dim), make_act(act), make_norm(norm, dim, eps))


class ConvBnRelu(nn.Sequential):
    """RepMLPNet's embedding: p×p stride-p conv without bias, BatchNorm, ReLU.

    Args:
        in_dim: input channels.
        out_dim: output channels.
        patch_size: p.
    """

    def __init__(self, in_dim: int, out_dim: int, patch_size: int) -> None:
        super().__init__(
            nn.Conv2d(in_dim, out_dim, patch_size, stride=patch_size, bias=False),
            nn.BatchNorm2d(out_dim),
            nn.ReLU(),
        )


class PatchMerging(nn.Module):
    """Swin / AS-MLP patch merging: p×p space-to-depth, norm over p²C, linear p²C -> C' (no bias).

    Args:
        in_dim: input channels C.
        out_dim: output channels C'.
        patch_size: p (2 in both papers).
        norm: the norm over p²C.
        eps: its epsilon.
    """

    def __init__(self, in_dim: int, out_dim: int, patch_size: int, *, norm: str, eps: float = 1e-5) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.norm = make_norm(norm, patch_size * patch_size * in_dim, eps)
        self.reduction = Conv1x1(patch_size * patch_size * in_dim, out_dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        x = F.pixel_unshuffle(x, self.patch_size)  # (B, p²C, H/p, W/p)
        return self.reduction(self.norm(x))


class ClassTokenPos(nn.Module):
    """Prepend a class token and add a position embedding.

    With a class token, the map is flattened to one row of tokens, carried as a (B, C, 1, 1+N)
    map (affinity.ops.base: only spatially agnostic affinities accept it); without one (GFNet)
    the map keeps its (H, W) shape and the position embedding is (1, C, H, W).

    Args:
        dim: channels.
        hw: the patch map's (H, W).
        class_token: prepend a learned class token.
        pos_embed: add a learned position embedding over all tokens.
    """

    def __init__(self, dim: int, hw: tuple[int, int], *, class_token: bool, pos_embed: bool) -> None:
        super().__init__()
        self.cls_token = nn.Parameter(torch.zeros(1, dim, 1, 1)) if class_token else None
        shape = (1, hw[0] * hw[1] + 1) if class_token else hw
        self.pos_embed = nn.Parameter(torch.zeros(1, dim, *shape)) if pos_embed else None
        if self.cls_token is not None:
            nn.init.trunc_normal_(self.cls_token, std=0.02)
        if self.pos_embed is not None:
            nn.init.trunc_normal_(self.pos_embed, std=0.02)

    def forward(self, x: Tensor) -> Tensor:
        b = x.shape[0]
        if self.cls_token is not None:
            x = x.flatten(2).unsqueeze(2)  # (B, C, 1, N)
            x = torch.cat([self.cls_token.expand(b, -1, -1, -1), x], dim=3)  # (B, C, 1, 1+N)
        if self.pos_embed is not None:
            x = x + self.pos_embed
        return x
