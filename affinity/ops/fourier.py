"""GFNet's global filter as a static affinity: a learned per-channel circulant, applied by FFT."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from affinity.errors import ConfigError
from affinity.ops._common import check_map
from affinity.ops.base import Affinity, register_affinity


@register_affinity("global_filter")
class GlobalFilter(Affinity):
    """GFNet's global filter layer (Rao et al., "Global Filter Networks for Image
    Classification", NeurIPS 2021, eq. 5; raoyongming/GFNet ``GlobalFilter``):
    ``X' = F⁻¹[K ⊙ F[X]]`` with a learned complex filter K per channel.

    By the convolution theorem this is a 2-D circular convolution of each channel with the
    real kernel ``g_c = irfft2(K_c)``: a static affinity ``A_c[(h, w), (h', w')] =
    g_c[(h − h') mod H, (w − w') mod W]``, a block-circulant matrix with circulant blocks
    (``materialize`` builds it). ``rfft2`` keeps ``W//2 + 1`` frequency columns; ``irfft2``
    reads the rest as the complex conjugates and, in column 0 (and column W/2 when W is even),
    keeps only the Hermitian part of the filter along H, so ``g_c`` is exactly what the fast
    path applies, for odd and even sides. Weights are stored as the authors store them,
    ``(H, W//2 + 1, C, 2)`` real/imaginary pairs (``view_as_complex``), initialised
    ``0.02·randn``; the ortho normalisations of ``rfft2`` and ``irfft2`` cancel.

    Args:
        dim: channels of ``v``.
        hw: the map size (H, W); required (the filter is tied to it).
    """

    paper = (
        "Global filter (GFNet, Rao et al., NeurIPS 2021, eq. 5): "
        "A_c = circulant(irfft2(K_c)), X' = F^-1[K ⊙ F[X]]"
    )

    layout: ClassVar[Mapping[str, Any]] = {"proj_in": False, "proj_out": False}

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.hw: tuple[int, int] = self.required_hw()  # the filter is tied to the map
        h, w = self.hw
        self.complex_weight = nn.Parameter(torch.randn(h, w // 2 + 1, self.dim, 2) * 0.02)

    def _filter(self, dtype: torch.dtype) -> Tensor:
        """The complex filter K, (C, H, W//2 + 1)."""
        real = torch.float64 if dtype == torch.float64 else torch.float32
        # contiguous: ``model.to(memory_format=torch.channels_last)`` lays this 4-d weight out
        # channels-last too, and ``view_as_complex`` needs its (re, im) pairs adjacent
        return torch.view_as_complex(self.complex_weight.to(real).contiguous()).permute(2, 0, 1)

    def _check_size(self, v: Tensor) -> None:
        if tuple(v.shape[2:]) != self.hw:
            raise ConfigError(
                f"global_filter: a {v.shape[2]}x{v.shape[3]} map is not allowed: the filter is "
                f"{self.hw[0]}x{self.hw[1]}"
            )

    def forward(self, v: Tensor, x: Tensor | None = None) -> Tensor:
        check_map(v, self.dim, self.name)
        self._check_size(v)
        # half precision (autocast) goes through float32: cuFFT takes float16 only for sides
        # that are powers of two, and bfloat16 not at all
        vin = v.float() if v.dtype in (torch.float16, torch.bfloat16) else v
        spec = torch.fft.rfft2(vin, dim=(2, 3), norm="ortho")  # (B, C, H, W//2+1) complex
        spec = spec * self._filter(v.dtype)
        return torch.fft.irfft2(spec, s=self.hw, dim=(2, 3), norm="ortho").to(v.dtype)

    def kernel(self, dtype: torch.dtype = torch.float32) -> Tensor:
        """The real circular-convolution kernel of every channel, (C, H, W)."""
        return torch.fft.irfft2(self._filter(dtype), s=self.hw, dim=(1, 2))

    def materialize(self, x: Tensor) -> Tensor:
        self._check_size(x)
        h, w = self.hw
        g = self.kernel(x.dtype).to(x.dtype).reshape(self.dim, h * w)
        dh = (torch.arange(h, device=x.device)[:, None] - torch.arange(h, device=x.device)[None, :]) % h
        dw = (torch.arange(w, device=x.device)[:, None] - torch.arange(w, device=x.device)[None, :]) % w
        idx = (dh[:, None, :, None] * w + dw[None, :, None, :]).reshape(-1)  # (h, w, h', w') flat
        return g[:, idx].reshape(1, self.dim, h * w, h * w)
