"""The authors' formulations of the operators beyond the seeds, as their code computes them.

Oracles for the tests (our fast paths must give the same numbers) and the competitors of
``benchmarks/ops.py`` (our fast paths must be at least as fast). Channels-last where the
released code is, with the weights passed in explicitly.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def poolformer_pooling(x: Tensor, pool_size: int = 3) -> Tensor:
    """sail-sg/poolformer ``Pooling``: ``nn.AvgPool2d(k, 1, k//2, count_include_pad=False)(x) − x``."""
    return F.avg_pool2d(x, pool_size, 1, pool_size // 2, count_include_pad=False) - x


def gfnet_global_filter(x: Tensor, complex_weight: Tensor) -> Tensor:
    """raoyongming/GFNet ``GlobalFilter.forward`` on (B, H, W, C), weight (H, W//2+1, C, 2)."""
    _, h, w, _ = x.shape
    spec = torch.fft.rfft2(x, dim=(1, 2), norm="ortho")
    spec = spec * torch.view_as_complex(complex_weight)
    return torch.fft.irfft2(spec, s=(h, w), dim=(1, 2), norm="ortho")


def circular_depthwise_conv(x: Tensor, kernel: Tensor) -> Tensor:
    """A depthwise conv with the global filter's support: an H×W kernel per channel over the
    circularly padded (B, C, H, W) map, ``out[h, w] = Σ g[a, b]·x[h − a, w − b]`` (indices mod
    H, W), for ``kernel = g`` (C, H, W), the circulant's first column."""
    c, h, w = kernel.shape
    top, left = h - 1 - h // 2, w - 1 - w // 2
    # correlation over the padded map: out[h] = Σ_k t[k]·x[h + k − top], so t[k] = g[top − k]
    rows = (top - torch.arange(h, device=x.device)) % h
    cols = (left - torch.arange(w, device=x.device)) % w
    weight = kernel[:, rows][:, :, cols]
    padded = F.pad(x, (left, w // 2, top, h // 2), mode="circular")
    return F.conv2d(padded, weight[:, None], groups=c)


def cyclemlp_cycle_fc(x: Tensor, weight: Tensor, bias: Tensor | None, kernel: tuple[int, int]) -> Tensor:
    """ShoufaChen/CycleMLP ``CycleFC`` (a 1×1 deformable conv with ``gen_offset``'s fixed
    offsets) on (B, C, H, W): channel c read at (y + dy_c, x + dx_c), zero outside, then the
    1×1 projection. Sampling with ``grid_sample`` (bilinear, zeros), as the deformable conv does,
    since torchvision's ``deform_conv2d`` is not a dependency here."""
    b, c, h, w = x.shape
    start = (kernel[0] * kernel[1]) // 2
    i = torch.arange(c, device=x.device)
    if kernel[0] == 1:
        dy, dx = torch.zeros_like(i), (i + start) % kernel[1] - kernel[1] // 2
    else:
        dy, dx = (i + start) % kernel[0] - kernel[0] // 2, torch.zeros_like(i)
    ys = torch.arange(h, device=x.device, dtype=x.dtype)[None, :, None] + dy[:, None, None]  # (C, H, 1)
    xs = torch.arange(w, device=x.device, dtype=x.dtype)[None, None, :] + dx[:, None, None]  # (C, 1, W)
    grid = torch.stack(
        [(2 * xs + 1) / w - 1 + 0 * ys, (2 * ys + 1) / h - 1 + 0 * xs], dim=-1
    )  # (C, H, W, 2), align_corners=False pixel centres
    sampled = F.grid_sample(
        x.reshape(b * c, 1, h, w),
        grid.repeat(b, 1, 1, 1),
        mode="bilinear",
        padding_mode="zeros",
        align_corners=False,
    ).reshape(b, c, h, w)
    return F.conv2d(sampled, weight, bias)


def vip_permute(x: Tensor, weight: Tensor, segment_dim: int, axis: str) -> Tensor:
    """houqb/VisionPermutator ``WeightedPermuteMLP``'s ``mlp_h`` / ``mlp_w`` on (B, H, W, C)."""
    b, h, w, c = x.shape
    s = c // segment_dim
    if axis == "h":
        t = x.reshape(b, h, w, segment_dim, s).permute(0, 3, 2, 1, 4).reshape(b, segment_dim, w, h * s)
        t = F.linear(t, weight).reshape(b, segment_dim, w, h, s).permute(0, 3, 2, 1, 4)
        return t.reshape(b, h, w, c)
    t = x.reshape(b, h, w, segment_dim, s).permute(0, 1, 3, 2, 4).reshape(b, h, segment_dim, w * s)
    t = F.linear(t, weight).reshape(b, h, segment_dim, w, s).permute(0, 1, 3, 2, 4)
    return t.reshape(b, h, w, c)


def split_attention(branches: list[Tensor], fc1: torch.nn.Linear, fc2: torch.nn.Linear) -> Tensor:
    """CycleMLP / ViP ``reweight``: per image and channel softmax weights over the (B, H, W, C)
    branches from their summed, token-averaged output."""
    b, _, _, c = branches[0].shape
    a = sum(branches).permute(0, 3, 1, 2).flatten(2).mean(2)  # type: ignore[union-attr]
    a = fc2(F.gelu(fc1(a))).reshape(b, c, len(branches)).permute(2, 0, 1).softmax(dim=0)
    return sum(y * a[k][:, None, None, :] for k, y in enumerate(branches))  # type: ignore[return-value]


def gmlp_spatial_gating(z: Tensor, norm: torch.nn.LayerNorm, weight: Tensor, bias: Tensor) -> Tensor:
    """timm ``SpatialGatingUnit`` on (B, N, d_ffn): ``u, v = z.chunk(2); u · proj(norm(v))``
    with ``proj`` across the N tokens."""
    u, v = z.chunk(2, dim=-1)
    v = norm(v)
    v = F.linear(v.transpose(-1, -2), weight, bias)
    return u * v.transpose(-1, -2)
