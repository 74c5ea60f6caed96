"""A space file's settings: everything but the model (data, training budget, study,
constraints), their rules, and command-line overrides.

The YAML sets them at the top level (``dataset``, ``img_size``, ``seed``) and in the
``budget``, ``search`` and ``constraints`` sections; ``with_overrides`` applies the command
line's values under the same rules.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from affinity.errors import SpaceError, is_int
from affinity.search._messages import mapping, show, unknown_key

__all__ = [
    "BUDGET_KEYS",
    "OBJECTIVES",
    "PRUNERS",
    "SAMPLERS",
    "Settings",
    "check_setting",
    "parse_settings",
    "with_overrides",
]

SAMPLERS = ("tpe", "nsga2", "random", "grid", "qmc")
OBJECTIVES = ("pareto", "accuracy")
PRUNERS = ("median", "hyperband", "none")


@dataclass(frozen=True)
class Settings:
    """Everything but the model: data, training budget, study, constraints.

    The YAML sets them (``dataset``, ``img_size``, ``seed``, ``budget``, ``search``,
    ``constraints``) and the command line overrides any of them.
    """

    dataset: str = "digits"
    img_size: int = 16
    seed: int = 0
    epochs: int = 2
    max_steps: int | None = None
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 0.05
    warmup_fraction: float = 0.1
    label_smoothing: float = 0.1
    augment: bool = True
    n_trials: int = 20
    sampler: str = "tpe"
    objective: str = "pareto"
    pruner: str = "median"
    n_jobs: int = 1
    max_gflops: float | None = None
    max_params: float | None = None

    #: the settings that change what a trial's accuracy means (a resumed study keeps them)
    TRAINING = ("dataset", "img_size", "seed", "epochs", "max_steps", "batch_size", "lr",
                "weight_decay", "warmup_fraction", "label_smoothing", "augment")  # fmt: skip

    def training(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.TRAINING}


#: the top-level settings of a space file
TOP_KEYS = ("dataset", "img_size", "seed")
#: the keys each section of a space file takes (the budget ones are TrainConfig's fields)
SECTION_KEYS = {
    "budget": ("epochs", "max_steps", "batch_size", "lr", "weight_decay", "warmup_fraction",
               "label_smoothing", "augment"),
    "search": ("n_trials", "sampler", "objective", "pruner", "n_jobs"),
    "constraints": ("max_gflops", "max_params"),
}  # fmt: skip
#: the training-budget settings, passed to TrainConfig as they are
BUDGET_KEYS = SECTION_KEYS["budget"]
#: setting -> its key path in the file
_SETTING_PATHS = {
    **{k: k for k in TOP_KEYS},
    **{k: f"{section}.{k}" for section, keys in SECTION_KEYS.items() for k in keys},
}


def is_positive(v: Any) -> bool:
    """A finite number > 0 (not a bool)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0


_SETTING_RULES: dict[str, tuple[Any, str]] = {
    "dataset": (
        lambda v: isinstance(v, str) and v.strip() != "",
        "a dataset spec such as digits or npz:PATH",
    ),
    "img_size": (lambda v: is_int(v, 4) and v <= 1024, "an integer from 4 to 1024"),
    "seed": (lambda v: is_int(v, 0), "an integer >= 0"),
    "epochs": (lambda v: is_int(v, 1), "an integer >= 1"),
    "max_steps": (lambda v: v is None or is_int(v, 1), "null or an integer >= 1"),
    "batch_size": (lambda v: is_int(v, 1), "an integer >= 1"),
    "lr": (is_positive, "a number > 0"),
    "weight_decay": (lambda v: is_positive(v) or v == 0, "a number >= 0"),
    "warmup_fraction": (lambda v: isinstance(v, (int, float)) and 0 <= v < 1, "a number in [0, 1)"),
    "label_smoothing": (lambda v: isinstance(v, (int, float)) and 0 <= v < 1, "a number in [0, 1)"),
    "augment": (lambda v: isinstance(v, bool), "true or false"),
    "n_trials": (lambda v: is_int(v, 1), "an integer >= 1 (the total number of trials in the study)"),
    "sampler": (lambda v: v in SAMPLERS, f"one of {', '.join(SAMPLERS)}"),
    "objective": (lambda v: v in OBJECTIVES, f"one of {', '.join(OBJECTIVES)}"),
    "pruner": (lambda v: v in PRUNERS, f"one of {', '.join(PRUNERS)}"),
    "n_jobs": (lambda v: is_int(v, 1), "an integer >= 1"),
    "max_gflops": (lambda v: v is None or is_positive(v), "null or a number > 0 (GFLOPs, fvcore)"),
    "max_params": (lambda v: v is None or is_positive(v), "null or a number > 0 (millions of parameters)"),
}


def check_setting(key: str, value: Any, where: str | None = None) -> Any:
    """Validate one setting; ``where`` names it in the message (key path or CLI option)."""
    ok, allowed = _SETTING_RULES[key]
    if not ok(value):
        raise SpaceError(f"{where or _SETTING_PATHS[key]}: {show(value)} is not allowed; allowed: {allowed}")
    if key in ("lr", "weight_decay", "warmup_fraction", "label_smoothing", "max_gflops", "max_params"):
        return None if value is None else float(value)
    return value


def parse_settings(doc: Mapping[str, Any]) -> Settings:
    """The settings of a space file's top-level mapping (the other keys are not looked at)."""
    values: dict[str, Any] = {}
    for key in TOP_KEYS:
        if key in doc:
            values[key] = check_setting(key, doc[key])
    for section, keys in SECTION_KEYS.items():
        if section not in doc:
            continue
        body = mapping(doc[section], section)
        for key in body:
            if key not in keys:
                raise unknown_key(key, section, keys)
            values[key] = check_setting(key, body[key])
    return Settings(**values)


def with_overrides(settings: Settings, **changes: Any) -> Settings:
    """``settings`` with command-line values (None: not given) validated and applied."""
    values = {}
    for key, value in changes.items():
        if value is None:
            continue
        values[key] = check_setting(key, value, f"--{key.replace('_', '-')}")
    return dataclasses.replace(settings, **values)
