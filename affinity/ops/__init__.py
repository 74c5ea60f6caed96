"""Affinities and the context aggregation built from them (never imports affinity.models).

Importing this package registers every affinity (``AFFINITIES.names()``).
"""

from __future__ import annotations

from affinity.ops import (  # noqa: F401  (registration)
    attention,
    conv,
    cycle,
    fourier,
    gating,
    permute,
    pooling,
    shift,
    token_mlp,
)
from affinity.ops.base import AFFINITIES, Affinity, create_affinity, register_affinity
from affinity.ops.config import BranchCfg, MixerCfg
from affinity.ops.mixer import ContextAggregation

__all__ = [
    "AFFINITIES",
    "Affinity",
    "BranchCfg",
    "ContextAggregation",
    "MixerCfg",
    "create_affinity",
    "register_affinity",
]
