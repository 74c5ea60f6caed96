"""Light batch augmentation on tensors: random crop with zero padding, horizontal flips.

It runs on whole batches already on the device (no per-image Python), drawing from the
trainer's generator so a seed fixes every crop and flip.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional as F


def random_crop(x: Tensor, pad: int, generator: torch.Generator) -> Tensor:
    """Each image shifted by up to ``pad`` pixels per axis, the uncovered border zero.

    Args:
        x: normalised images (B, C, H, W); zero is the train mean after normalisation.
        pad: largest shift.
        generator: random source (on the CPU).
    """
    if pad <= 0:
        return x
    b, _, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    offsets = torch.randint(0, 2 * pad + 1, (2, b), generator=generator).to(x.device)
    rows = offsets[0, :, None] + torch.arange(h, device=x.device)  # (B, H)
    cols = offsets[1, :, None] + torch.arange(w, device=x.device)  # (B, W)
    batch = torch.arange(b, device=x.device)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]  # (B, H, W, C)
    return out.permute(0, 3, 1, 2).contiguous()


def random_flip(x: Tensor, generator: torch.Generator) -> Tensor:
    """Mirror each image left-right with probability 1/2."""
    mask = (torch.rand(x.shape[0], generator=generator) < 0.5).to(x.device)
    return torch.where(mask[:, None, None, None], x.flip(-1), x)
