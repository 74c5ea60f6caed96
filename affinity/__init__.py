"""affinity: every token mixer of a vision backbone as one context aggregation.

``Y = Concat_m((α_m·A_m(X) + β_m·A_m)·V_m)·W + X`` (Container, Gao et al. 2021), with
dynamic affinities ``A_m(X)`` (attention) and static ones ``A_m`` (depthwise convolution,
token MLPs, axial and spatial shifts). Heavy submodules load lazily so ``import affinity``
and ``affinity --help`` stay instant.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

__version__ = "0.1.0"


def lazy_attributes(package: str, homes: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` (PEP 562) for ``package``: public name -> the submodule of
    ``package`` that defines it, imported on first access (so ``--help`` imports no torch)."""

    def getattr_(name: str) -> Any:
        if name not in homes:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{homes[name]}"), name)

    return getattr_


# public name -> the submodule that defines it
_LAZY = {
    "create_model": "models",
    "list_models": "models",
    "profile": "profiling",
    "keep_freed_memory": "memory",
    "AffinityError": "errors",
}

__all__ = ["__version__", "lazy_attributes", *_LAZY]

__getattr__ = lazy_attributes(__name__, _LAZY)
