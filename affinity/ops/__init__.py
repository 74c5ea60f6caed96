"""Affinities and the context aggregation built from them (never imports affinity.models)."""

from __future__ import annotations

from affinity.ops.base import AFFINITIES, Affinity, create_affinity, register_affinity

__all__ = ["AFFINITIES", "Affinity", "create_affinity", "register_affinity"]
