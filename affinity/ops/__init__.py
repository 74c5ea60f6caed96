"""Affinities and the context aggregation built from them (never imports affinity.models).

Importing this package imports every public module in it, so an affinity registers itself
(``@register_affinity``) by being defined in a file here: ``AFFINITIES.names()`` lists them.
"""

from __future__ import annotations

import importlib
import pkgutil

from affinity.ops.base import AFFINITIES, Affinity, create_affinity, register_affinity
from affinity.ops.config import BranchCfg, MixerCfg
from affinity.ops.mixer import ContextAggregation
from affinity.ops.params import Param

for _module in pkgutil.iter_modules(__path__):
    if not _module.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = [
    "AFFINITIES",
    "Affinity",
    "BranchCfg",
    "ContextAggregation",
    "MixerCfg",
    "Param",
    "create_affinity",
    "register_affinity",
]
