"""``TrainConfig``: how to train (everything but the model and the data), declared once.

Each field carries its default, its rule (what it may hold, as a test and in words) and a
one-line meaning in the field's metadata. Everything that takes training settings reads that
declaration: ``TrainConfig`` validates with it, ``affinity train`` generates its options and
its ``--config`` file reader from it, a model-config YAML's run settings
(``affinity.train.runfile``) and a search space's ``budget:`` section are checked against it.
Adding a training setting means adding one field here.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from affinity.device import ALLOWED as DEVICE_NAMES
from affinity.device import is_device_name
from affinity.errors import AffinityError, ConfigError, check, closest, is_int

__all__ = [
    "BUDGET_KEYS",
    "DATA_DEFAULTS",
    "DATA_RULES",
    "RUNTIME_KEYS",
    "Rule",
    "TrainConfig",
    "check_value",
    "meaning",
    "rule",
]


@dataclass(frozen=True)
class Rule:
    """What a setting may hold.

    Attributes:
        test: True for an allowed value (as given: a YAML or command-line value).
        allowed: the same in words, for error messages and help.
        kind: the value's type: int, float, bool or str (a float setting takes an int and
            stores it as a float; the command line parses with it).
        optional: None is allowed (it means what the field's meaning says).
    """

    test: Callable[[Any], bool]
    allowed: str
    kind: type = str
    optional: bool = False

    def __call__(self, value: Any) -> bool:
        return (self.optional and value is None) or self.test(value)

    def convert(self, value: Any) -> Any:
        """An allowed ``value`` in the setting's kind (an int given for a float becomes a float)."""
        return float(value) if self.kind is float and value is not None else value


def _or_null(allowed: str, optional: bool) -> str:
    return f"null or {allowed}" if optional else allowed


def integer(minimum: int, maximum: int | None = None, *, optional: bool = False) -> Rule:
    """An int (not a bool) from ``minimum`` to ``maximum``."""
    words = f"an integer >= {minimum}" if maximum is None else f"an integer from {minimum} to {maximum}"
    return Rule(
        lambda v: is_int(v, minimum) and (maximum is None or v <= maximum),
        _or_null(words, optional),
        int,
        optional,
    )


def number(low: float, high: float | None = None, *, open_low: bool = False, open_high: bool = False,
           optional: bool = False) -> Rule:  # fmt: skip
    """A finite int or float (not a bool) between ``low`` and ``high``, ends closed unless open."""

    def test(v: Any) -> bool:
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
            return False
        above = v > low if open_low else v >= low
        below = high is None or (v < high if open_high else v <= high)
        return above and below

    if high is None:
        words = f"a number {'>' if open_low else '>='} {low:g}"
    else:
        words = f"a number in {'(' if open_low else '['}{low:g}, {high:g}{')' if open_high else ']'}"
    return Rule(test, _or_null(words, optional), float, optional)


def flag(*, optional: bool = False) -> Rule:
    """true or false."""
    return Rule(lambda v: isinstance(v, bool), _or_null("true or false", optional), bool, optional)


def setting(default: Any, rule: Rule, meaning: str, *, runtime: bool = False) -> Any:
    """A declared field: its default, its rule and a one-line meaning.

    Args:
        default: the value when nobody sets it.
        rule: what it may hold.
        meaning: one line for help and docs.
        runtime: where or how fast the run goes, not what it computes (device, threads): set
            on the command line of the machine that runs it, never in a file's ``budget:``.
    """
    return field(default=default, metadata={"rule": rule, "meaning": meaning, "runtime": runtime})


@dataclass(frozen=True)
class TrainConfig:
    """How to train (everything but the model and the data).

    Each field's meaning, default and rule are declared with it below (``meaning(name)``,
    ``rule(name)``); a value that breaks its rule is a ``ConfigError`` naming the field.
    """

    epochs: int = setting(30, integer(1), "passes over the train split (unless max_steps is set)")
    max_steps: int | None = setting(
        None, integer(1, optional=True), "optimiser steps in all, instead of epochs (null: epochs)"
    )
    batch_size: int = setting(128, integer(1), "images per optimiser step")
    lr: float = setting(3e-3, number(0, open_low=True), "peak AdamW learning rate, reached after the warm-up")
    weight_decay: float = setting(0.05, number(0), "AdamW's decoupled weight decay (not on norms and biases)")
    warmup_fraction: float = setting(
        0.1, number(0, 1, open_high=True), "share of all steps warming up linearly from 0 to lr"
    )
    min_lr_ratio: float = setting(0.01, number(0, 1), "the cosine decays to lr * min_lr_ratio")
    label_smoothing: float = setting(0.1, number(0, 1, open_high=True), "cross-entropy label smoothing")
    clip_grad: float | None = setting(
        1.0, number(0, optional=True), "largest gradient norm (0 or null: no clipping)"
    )
    seed: int = setting(0, integer(0), "seeds the weights, the split, the batch order and augmentation")
    device: str = setting(
        "auto", Rule(is_device_name, DEVICE_NAMES), "auto takes CUDA when present, else the CPU", runtime=True
    )
    threads: int | None = setting(
        1,
        integer(1, optional=True),
        "torch CPU threads while training (one per process, as the search; null: torch's own)",
        runtime=True,
    )
    amp: bool | None = setting(
        None, flag(optional=True), "mixed precision (null: on for CUDA, off on the CPU)"
    )
    augment: bool = setting(True, flag(), "the dataset's light augmentation (random crop, flips)")
    eval_batch_size: int = setting(1024, integer(1), "images per forward pass when evaluating")
    deterministic: bool = setting(True, flag(), "deterministic algorithms while training")

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            spec: Rule = f.metadata["rule"]
            check(spec(value), f.name, value, spec.allowed)
            object.__setattr__(self, f.name, spec.convert(value))

    def to_dict(self) -> dict[str, Any]:
        """Field name -> value, in declaration order."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


_FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}
#: set on the command line of the machine that runs the training, never in a file's budget
RUNTIME_KEYS = tuple(k for k, f in _FIELDS.items() if f.metadata["runtime"])
#: what a file's ``budget:`` section takes: every field but the seed (a file sets it at the
#: top level, beside the dataset) and the runtime ones
BUDGET_KEYS = tuple(k for k in _FIELDS if k != "seed" and k not in RUNTIME_KEYS)
#: the data a run trains on, beside TrainConfig: the dataset spec and the image side (None:
#: the dataset's own); a model config's run settings and a search space set them
DATA_RULES = {
    "dataset": Rule(
        lambda v: isinstance(v, str) and v.strip() != "", "a dataset spec such as digits or npz:PATH"
    ),
    "img_size": integer(4, 1024),
    # a search trial trains with its own seed on the split of the study's seed, which its
    # front file keeps here (None: the split follows ``seed``)
    "data_seed": integer(0, optional=True),
}
#: their defaults for ``affinity train`` (the search's are in its settings module)
DATA_DEFAULTS: dict[str, Any] = {"dataset": "digits", "img_size": None, "data_seed": None}


def rule(key: str) -> Rule:
    """The rule of a TrainConfig field or a data setting (``dataset``, ``img_size``)."""
    return DATA_RULES[key] if key in DATA_RULES else _FIELDS[key].metadata["rule"]


def meaning(key: str) -> str:
    """The one-line meaning of a TrainConfig field."""
    return str(_FIELDS[key].metadata["meaning"])


def check_value(
    key: str,
    value: Any,
    where: str = "",
    *,
    keys: Sequence[str] | None = None,
    error: type[AffinityError] = ConfigError,
) -> Any:
    """``value`` for the setting ``key`` (a TrainConfig field or a data setting), converted.

    Args:
        key: the setting's name.
        value: as a file or the command line gave it.
        where: the key path of its section ('' for the top level), or the option (``--lr``)
            when it starts with ``-``.
        keys: the keys allowed where it was found (default: every setting).
        error: the exception to raise (the search raises its ``SpaceError``).

    Raises:
        error: an unknown key, naming the closest ones, or a value the rule refuses.
    """
    path = where if where.startswith("-") else f"{where}.{key}" if where else key
    known = list(keys) if keys is not None else [*DATA_RULES, *_FIELDS]
    if key not in known:
        near = closest(str(key), known)
        hint = f" (did you mean {', '.join(near)}?)" if near else ""
        raise error(f"{path}: unknown key{hint}; allowed: {', '.join(known)}")
    spec = rule(key)
    if not spec(value):
        raise error(f"{path}: {value!r} is not allowed; allowed: {spec.allowed}")
    return spec.convert(value)
