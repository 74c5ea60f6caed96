"""The value forms a search-space file allows, and how an Optuna trial samples each.

A leaf of the space is either a fixed value or one of three searched forms::

    shift_size: 5                          # fixed
    shift_size: {choice: [3, 5, 7]}        # categorical (any YAML scalars, or lists)
    dilation: {int: [1, 3]}                # integers lo..hi inclusive; step: 2; log: true
    alpha: {float: [0.1, 1.0], log: true}  # floats lo..hi; step: 0.1 or log: true

Parse errors are ``SpaceError``s whose message starts with the key path.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from affinity.errors import SpaceError

__all__ = [
    "Choice",
    "FloatRange",
    "IntRange",
    "Param",
    "Value",
    "candidates",
    "distribution",
    "is_param",
    "parse_value",
    "suggest",
]

#: Past this many values an int range is not enumerated (dry checks use its ends and middle).
ENUMERATE_LIMIT = 64
#: Past this many values a range is searched as a continuum, never listed (grids, --check)
GRID_LIMIT = 100_000


def _fmt(value: Any) -> str:
    return json.dumps(value) if isinstance(value, (list, str, bool)) or value is None else repr(value)


@dataclass(frozen=True)
class Choice:
    """A categorical parameter: one of ``values`` (scalars, or lists such as stage dims)."""

    values: tuple[Any, ...]

    def labels(self) -> list[Any]:
        """What Optuna stores: the values themselves, lists as their JSON text."""
        return [json.dumps(v) if isinstance(v, list) else v for v in self.values]

    def decode(self, label: Any) -> Any:
        for value, lab in zip(self.values, self.labels()):
            if lab == label:
                return value
        raise KeyError(label)


@dataclass(frozen=True)
class IntRange:
    """Integers ``lo..hi`` inclusive, every ``step`` (or log-uniform)."""

    lo: int
    hi: int
    step: int = 1
    log: bool = False

    def values(self) -> list[int]:
        return list(range(self.lo, self.hi + 1, self.step))

    def count(self) -> int:
        """How many values, without listing them ({int: [1, 1e12]} is a valid range)."""
        return (self.hi - self.lo) // self.step + 1


@dataclass(frozen=True)
class FloatRange:
    """Floats in ``[lo, hi]``, uniform, log-uniform, or on a ``step`` grid."""

    lo: float
    hi: float
    step: float | None = None
    log: bool = False


Param = Choice | IntRange | FloatRange
#: A leaf of a space: a fixed value or a searched parameter.
Value = Any

_FORMS = ("choice", "int", "float")


def is_param(value: Any) -> bool:
    return isinstance(value, (Choice, IntRange, FloatRange))


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def parse_value(raw: Any, path: str) -> Value:
    """A fixed value as is, or the ``Param`` a ``{choice|int|float: ...}`` mapping describes.

    Args:
        raw: the YAML value.
        path: its key path, for messages.
    """
    if not isinstance(raw, Mapping) or not any(k in raw for k in _FORMS):
        return raw
    forms = [k for k in _FORMS if k in raw]
    if len(forms) > 1:
        raise SpaceError(
            f"{path}: {dict(raw)!r} names {' and '.join(forms)}; allowed: exactly one of {_FORMS}"
        )
    form = forms[0]
    allowed_keys = {"choice": {"choice"}, "int": {"int", "step", "log"}, "float": {"float", "step", "log"}}[
        form
    ]
    for key in raw:
        if key not in allowed_keys:
            raise SpaceError(
                f"{path}.{key}: unknown key in a {form} parameter; allowed: {', '.join(sorted(allowed_keys))}"
            )
    if form == "choice":
        values = raw["choice"]
        if not isinstance(values, list):
            raise SpaceError(
                f"{path}.choice: {_fmt(values)} is not a list; allowed: a non-empty list of values"
            )
        if not values:
            raise SpaceError(f"{path}.choice: [] is empty; allowed: a non-empty list of values")
        for i, v in enumerate(values):
            if isinstance(v, Mapping):
                raise SpaceError(f"{path}.choice[{i}]: {v!r} is a mapping; allowed: scalars or lists")
        labels = [json.dumps(v, sort_keys=True) for v in values]
        dup = next((values[i] for i, lab in enumerate(labels) if labels.index(lab) != i), None)
        if dup is not None:
            raise SpaceError(f"{path}.choice: {_fmt(dup)} is listed twice; allowed: distinct values")
        return Choice(tuple(values))
    bounds = raw[form]
    kind = "integers" if form == "int" else "numbers"
    if (
        not isinstance(bounds, list)
        or len(bounds) != 2
        or not all(_is_number(b) for b in bounds)
        or (form == "int" and not all(isinstance(b, int) for b in bounds))
    ):
        raise SpaceError(f"{path}.{form}: {_fmt(bounds)} is not allowed; allowed: [lo, hi], two {kind}")
    lo, hi = bounds
    if lo > hi:
        raise SpaceError(f"{path}.{form}: [{lo}, {hi}] is inverted; allowed: [lo, hi] with lo <= hi")
    log = raw.get("log", False)
    if not isinstance(log, bool):
        raise SpaceError(f"{path}.log: {_fmt(log)} is not allowed; allowed: true or false")
    if log and lo <= 0:
        raise SpaceError(f"{path}.{form}: [{lo}, {hi}] with log: true; allowed: lo > 0 on a log scale")
    step = raw.get("step")
    if step is not None:
        if log:
            raise SpaceError(f"{path}.step: {_fmt(step)} with log: true; allowed: step or log, not both")
        ok = isinstance(step, int) if form == "int" else _is_number(step)
        if not ok or isinstance(step, bool) or step <= 0:
            raise SpaceError(f"{path}.step: {_fmt(step)} is not allowed; allowed: a positive {kind[:-1]}")
    if form == "int":
        return IntRange(int(lo), int(hi), int(step or 1), log)
    return FloatRange(float(lo), float(hi), None if step is None else float(step), log)


def suggest(trial: Any, name: str, value: Value) -> Any:
    """Sample ``value`` under ``name`` in an Optuna trial (define-by-run); fixed values pass through."""
    if isinstance(value, Choice):
        return value.decode(trial.suggest_categorical(name, value.labels()))
    if isinstance(value, IntRange):
        return trial.suggest_int(name, value.lo, value.hi, step=value.step, log=value.log)
    if isinstance(value, FloatRange):
        return trial.suggest_float(name, value.lo, value.hi, step=value.step, log=value.log)
    return value


def distribution(value: Param) -> Any:
    """The Optuna distribution ``suggest`` samples ``value`` from (what a study records)."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    if isinstance(value, Choice):
        return CategoricalDistribution(value.labels())
    if isinstance(value, IntRange):
        return IntDistribution(value.lo, value.hi, log=value.log, step=value.step)
    return FloatDistribution(value.lo, value.hi, log=value.log, step=value.step)


def candidates(value: Value) -> list[Any]:
    """The values a leaf can take, for dry checks: every one where few, else ends and middle."""
    if isinstance(value, Choice):
        return list(value.values)
    if isinstance(value, IntRange):
        n = value.count()
        if n <= ENUMERATE_LIMIT:
            return value.values()
        last = value.lo + (n - 1) * value.step
        return sorted({value.lo, value.lo + (n // 2) * value.step, last})
    if isinstance(value, FloatRange):
        return sorted({value.lo, (value.lo + value.hi) / 2, value.hi})
    return [value]


def grid_values(value: Value) -> list[Any] | None:
    """Every value of a discrete leaf as Optuna stores it (for the grid sampler); None for a
    float range without a step, or a range of more than ``GRID_LIMIT`` values."""
    if isinstance(value, Choice):
        return value.labels()
    if isinstance(value, IntRange):
        return value.values() if value.count() <= GRID_LIMIT else None
    if isinstance(value, FloatRange):
        if value.step is None:
            return None
        n = math.floor((value.hi - value.lo) / value.step + 1e-9)
        return [value.lo + i * value.step for i in range(n + 1)]
    return [value]
