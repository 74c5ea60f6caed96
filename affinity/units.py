"""Counts with a unit that scales (K, M, G), chosen once per column so a column compares.

A FLOP here is fvcore's, one multiply-add (see ``affinity.flops.UNIT``). A table picks one
``Scale`` per column from the largest figure in it (``scale_for``), so ``0.26 M`` and
``1.1 M`` sit one above the other instead of ``0.000`` beside ``0.001``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["Scale", "scale_for"]

_PREFIXES = ((1e9, "G"), (1e6, "M"), (1e3, "K"), (1.0, ""))


@dataclass(frozen=True)
class Scale:
    """One unit for a column of counts.

    Args:
        factor: what one displayed unit counts (1e9 for G).
        prefix: ``G``, ``M``, ``K`` or ``""``.
        decimals: digits after the point, enough for three significant digits of the
            column's largest figure.
    """

    factor: float
    prefix: str
    decimals: int

    def __call__(self, value: float | None) -> str:
        """``value`` in this unit (``""`` for a missing or non-finite value)."""
        if value is None or not math.isfinite(value):
            return ""
        return f"{value / self.factor:.{self.decimals}f}"

    @property
    def word(self) -> str:
        """``thousands``, ``millions``, ``billions`` or ``units``."""
        return {"K": "thousands", "M": "millions", "G": "billions"}.get(self.prefix, "units")

    def label(self, what: str) -> str:
        """The column header, e.g. ``MFLOPs`` or ``params (K)``."""
        if what == "FLOPs":
            return f"{self.prefix}FLOPs"
        return f"{what} ({self.prefix})" if self.prefix else what


def scale_for(values: Iterable[float | None]) -> Scale:
    """The unit that shows the largest finite value of ``values`` as 1 to 999."""
    finite = [abs(v) for v in values if v is not None and math.isfinite(v)]
    top = max(finite, default=0.0)
    factor, prefix = next(((f, p) for f, p in _PREFIXES if top >= f), _PREFIXES[-1])
    shown = top / factor
    if factor == 1.0 and all(float(v).is_integer() for v in finite):
        decimals = 0
    else:
        decimals = 0 if shown >= 100 else 1 if shown >= 10 else 2
    return Scale(factor, prefix, decimals)
