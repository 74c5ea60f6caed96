"""gMLP's spatial gating unit as a dynamic affinity: a dense token matrix gated by the input."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from affinity.errors import ConfigError
from affinity.ops.base import Affinity, register_affinity
from affinity.ops.params import Param, at_least, optional


@register_affinity("spatial_gating")
class SpatialGating(Affinity):
    """gMLP's spatial gating unit (Liu et al., "Pay Attention to MLPs", NeurIPS 2021, eq. 2–4;
    timm ``SpatialGatingUnit``): ``s(Z) = Z₁ ⊙ f(Z₂)``, ``f(Z₂) = W·Z₂ + b`` across tokens.

    gMLP splits ``Z = GELU(X·U)`` along the channels into the gate ``Z₁`` and the values
    ``Z₂``. Read as an affinity applied to the values ``V = Z₂`` (the mixer's input projection,
    GELU and value norm make it), it is dynamic: ``A(X) = diag(z₁(X))·W`` per channel, with the
    affine offset ``z₁(X) ⊙ b``, where this affinity owns the gate's half of ``U``,
    ``z₁(X) = GELU(X·U₁ + c)``, as attention owns its Q, K projection. ``W`` is one learned
    N×N token matrix shared by every channel, initialised near zero (normal, std 1e-6) with
    ``b = 1``, so that the unit starts as ``Z₁`` times one, as the paper prescribes.

    Args:
        dim: channels of ``v`` (gMLP: half the hidden width).
        hw: the map size (H, W); required (the matrix is tied to the token count).
        dim_x: channels of ``x`` (the block width; default ``dim``).
    """

    dynamic = True
    paper = (
        "Spatial gating (gMLP, Liu et al., NeurIPS 2021, eq. 2-4): A(X) = diag(GELU(X·U_1))·W, offset z_1 ⊙ b"
    )

    params = (
        Param("dim_x", None, optional(at_least(1), "dim"), "channels of the block input x", search=False),
    )
    #: gMLP's block body around it (``gmlp_mixer``): V = LN(GELU(x·U_2)), 3x wider
    layout: ClassVar[Mapping[str, Any]] = {
        "proj_in_act": "gelu",
        "value_norm": "layernorm",
        "width_ratio": 3.0,
    }

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.dim_x: int = self.dim if self.hparams["dim_x"] is None else self.hparams["dim_x"]
        self.hw: tuple[int, int] = self.required_hw()  # W is tied to the token count
        n = self.hw[0] * self.hw[1]
        self.gate = nn.Linear(self.dim_x, self.dim)
        nn.init.xavier_uniform_(self.gate.weight)
        nn.init.zeros_(self.gate.bias)
        self.weight = nn.Parameter(torch.empty(n, n).normal_(std=1e-6))
        self.bias = nn.Parameter(torch.ones(n))

    def _check(self, v: Tensor, x: Tensor) -> None:
        n = self.hw[0] * self.hw[1]
        if v.dim() != 4 or v.shape[1] != self.dim or v.shape[2] * v.shape[3] != n:
            raise ConfigError(
                f"spatial_gating: input shape {tuple(v.shape)} is not allowed: expected "
                f"(B, {self.dim}, H, W) with H*W = {n}"
            )
        if x.dim() != 4 or x.shape[1] != self.dim_x or x.shape[0] != v.shape[0] or x.shape[2:] != v.shape[2:]:
            raise ConfigError(
                f"spatial_gating: x shape {tuple(x.shape)} is not allowed: expected "
                f"({v.shape[0]}, {self.dim_x}, {v.shape[2]}, {v.shape[3]})"
            )

    def gate_values(self, x: Tensor) -> Tensor:
        """``z₁(X) = GELU(X·U₁ + c)``, (B, C, N)."""
        z = F.gelu(self.gate(x.flatten(2).transpose(1, 2)))  # (B, N, C)
        return z.transpose(1, 2)

    def forward(self, v: Tensor, x: Tensor | None = None) -> Tensor:
        x = v if x is None else x
        self._check(v, x)
        b, c, h, w = v.shape
        mixed = F.linear(v.reshape(b, c, h * w), self.weight, self.bias)  # (B, C, N): W·z₂ + b
        return (self.gate_values(x) * mixed).reshape(b, c, h, w)

    def materialize(self, x: Tensor) -> Tensor:
        self._check(x.new_empty(x.shape[0], self.dim, *x.shape[2:]), x)
        return self.gate_values(x).unsqueeze(-1) * self.weight.to(x.dtype)  # (B, C, N, N)

    def offset(self, x: Tensor) -> Tensor | None:
        return self.gate_values(x) * self.bias.to(x.dtype)  # (B, C, N)
