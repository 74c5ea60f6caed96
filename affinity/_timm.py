"""Import timm for the comparisons with it, when it is installed (the ``timm`` extra):
``affinity benchmark --compare-timm`` and tests/checkpoints/test_timm.py.

timm 1.0 imports torchvision at import time (data transforms, datasets, FrozenBatchNorm2d),
and torchvision's wheels do not load beside the CPU torch build; the models compared here
use none of it. So, only when torchvision itself cannot be imported, this puts a stand-in
in ``sys.modules`` whose names exist but cannot be instantiated. Only the benchmark and the
tests import timm; no model of affinity's depends on it.
"""

from __future__ import annotations

import enum
import importlib
import importlib.util
import sys
import types
from typing import Any

_MODULES = (
    "torchvision",
    "torchvision.datasets",
    "torchvision.models",
    "torchvision.models.feature_extraction",
    "torchvision.ops",
    "torchvision.ops.misc",
    "torchvision.transforms",
    "torchvision.transforms.functional",
    "torchvision.utils",
)


class InterpolationMode(enum.Enum):
    NEAREST = "nearest"
    BILINEAR = "bilinear"
    BICUBIC = "bicubic"
    BOX = "box"
    HAMMING = "hamming"
    LANCZOS = "lanczos"


class _Unavailable:
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError("torchvision stand-in: torchvision does not load beside this torch build")


def _attr(name: str) -> Any:
    if name.startswith("_"):
        raise AttributeError(name)
    return _Unavailable


def _install_standin() -> None:
    for name in _MODULES:
        mod = types.ModuleType(name)
        mod.__path__ = []  # a package, so submodule imports resolve through sys.modules
        mod.InterpolationMode = InterpolationMode  # type: ignore[attr-defined]
        mod.__getattr__ = _attr  # type: ignore[method-assign]
        sys.modules[name] = mod
    for name in _MODULES:
        parent, _, child = name.rpartition(".")
        if parent:
            setattr(sys.modules[parent], child, sys.modules[name])


def import_timm() -> Any:
    """The timm module, or None when timm is not installed."""
    if importlib.util.find_spec("timm") is None:
        return None
    try:
        importlib.import_module("torchvision")
    except Exception:
        _install_standin()
    return importlib.import_module("timm")
