"""affinity: every token mixer of a vision backbone as one context aggregation.

``Y = Concat_m((α_m·A_m(X) + β_m·A_m)·V_m)·W + X`` (Container, Gao et al. 2021), with
dynamic affinities ``A_m(X)`` (attention) and static ones ``A_m`` (depthwise convolution,
token MLPs, axial and spatial shifts). Heavy submodules load lazily so ``import affinity``
and ``affinity --help`` stay instant.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> module that defines it; resolved on first access (PEP 562)
_LAZY = {
    "create_model": "affinity.models",
    "list_models": "affinity.models",
    "profile": "affinity.profiling",
    "AffinityError": "affinity.errors",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'affinity' has no attribute {name!r}")
