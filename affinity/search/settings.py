"""A space file's settings: everything but the model (data, training budget, study,
constraints), their rules, and command-line overrides.

The YAML sets them at the top level (``dataset``, ``img_size``, ``seed``) and in the
``budget``, ``search`` and ``constraints`` sections; ``with_overrides`` applies the command
line's values under the same rules. The data and budget settings are ``TrainConfig``'s
(``affinity.train.config``: one declaration of each setting's default, rule and meaning);
``TRIAL_DEFAULTS`` is the one place where the search's defaults differ from it.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from affinity.errors import SpaceError, is_int
from affinity.search._messages import mapping, show, unknown_key
from affinity.search.devices import AUTO
from affinity.train.config import BUDGET_KEYS, Rule, TrainConfig, integer, number, rule

__all__ = [
    "BUDGET_KEYS",
    "FIDELITIES",
    "OBJECTIVES",
    "PRUNERS",
    "SAMPLERS",
    "TRIAL_DEFAULTS",
    "Settings",
    "check_cheap_signals",
    "check_enqueue",
    "check_setting",
    "parse_settings",
    "with_overrides",
]

SAMPLERS = ("tpe", "nsga2", "random", "grid", "qmc", "ehvi")
OBJECTIVES = ("pareto", "accuracy")
PRUNERS = ("median", "hyperband", "none")
#: ``none``: every trial trains the whole budget; ``asha``: multi-objective successive halving
#: (``affinity.search.fidelity``)
FIDELITIES = ("none", "asha")

#: A search trains many models briefly, so each trial's defaults are smaller than
#: ``affinity train``'s (TrainConfig's): 16×16 images, 2 epochs of batch 64. Every other
#: default and every rule is TrainConfig's.
TRIAL_DEFAULTS: dict[str, Any] = {"img_size": 16, "epochs": 2, "batch_size": 64}


def _trial_budget() -> TrainConfig:
    return TrainConfig(**{k: v for k, v in TRIAL_DEFAULTS.items() if k in BUDGET_KEYS})


@dataclass(frozen=True)
class Settings:
    """Everything but the model: data, training budget, study, constraints.

    The YAML sets them (``dataset``, ``img_size``, ``seed``, ``budget``, ``search``,
    ``constraints``) and the command line overrides any of them.

    Attributes:
        dataset: the dataset spec every trial trains on.
        img_size: the image side.
        budget: how each trial trains (``seed`` included; ``device`` and ``threads`` are
            the worker's, from its command line).
        n_trials, sampler, objective, pruner, n_jobs: the study.
        repeats: training seeds per new configuration (val accuracy is their mean).
        max_gflops, max_params: constraints checked before training.
        fidelity, rungs, eta: multi-fidelity (``affinity.search.fidelity``): with ``asha`` a
            trial continues past each rung (an epoch count; empty: the epochs divided by
            powers of ``eta``) only while it is in the best ``1/eta`` of the trials that
            reached it; the full budget (``budget.epochs``) is the last rung.
        prescreen, proxy: with ``prescreen`` K > 1, each trained trial is the best of K
            proposals by the zero-cost ``proxy`` (``affinity.search.prescreen``).
        timeout: seconds after which no new trial starts (running ones finish); None: none.
    """

    dataset: str = "digits"
    img_size: int = TRIAL_DEFAULTS["img_size"]
    budget: TrainConfig = field(default_factory=_trial_budget)
    n_trials: int = 20
    sampler: str = "tpe"
    objective: str = "pareto"
    pruner: str = "median"
    #: worker processes, or ``auto`` (``affinity.search.devices.worker_count``)
    n_jobs: int | str = 1
    repeats: int = 1
    max_gflops: float | None = None
    max_params: float | None = None
    #: ``search.enqueue``: known designs evaluated first, as {parameter name: value}
    #: (checked against the space's parameters by ``check_enqueue``)
    enqueue: tuple[dict[str, Any], ...] = ()
    fidelity: str = "none"
    rungs: tuple[int, ...] = ()
    eta: int = 3
    prescreen: int = 1
    proxy: str = "naswot"
    timeout: float | None = None

    @property
    def seed(self) -> int:
        """The study's seed (``budget.seed``): the split, every trial's training, the sampler."""
        return self.budget.seed

    def training(self) -> dict[str, Any]:
        """The settings that change what a trial's accuracy means (a resumed study keeps
        them), flat: the data, the seed and the budget (what ``save_run_config`` takes)."""
        budget = {k: getattr(self.budget, k) for k in BUDGET_KEYS}
        return {"dataset": self.dataset, "img_size": self.img_size, "seed": self.seed, **budget}

    def rung_epochs(self) -> tuple[int, ...]:
        """The epochs at which an ``asha`` trial is judged, then the full budget (the last
        rung): ``rungs`` below ``budget.epochs``, or, when none were given, the epochs
        divided by ``eta``, ``eta``², ... rounded (9 epochs, η 3: 1, 3, 9); empty for
        ``fidelity: none``."""
        if self.fidelity != "asha":
            return ()
        epochs = self.budget.epochs
        below = [r for r in self.rungs if r < epochs]
        if not self.rungs:
            below = sorted({round(epochs / self.eta**k) for k in range(1, 64) if epochs / self.eta**k >= 1})
            below = [r for r in below if r < epochs]
        return (*below, epochs)


#: the top-level settings of a space file
TOP_KEYS = ("dataset", "img_size", "seed")
#: the keys each section of a space file takes (the budget's are TrainConfig's fields)
SECTION_KEYS = {
    "budget": BUDGET_KEYS,
    "search": (
        *("n_trials", "sampler", "objective", "pruner", "n_jobs", "repeats", "enqueue"),
        *("fidelity", "rungs", "eta", "prescreen", "proxy", "timeout"),
    ),
    "constraints": ("max_gflops", "max_params"),
}
#: setting -> its key path in the file
_SETTING_PATHS = {
    **{k: k for k in TOP_KEYS},
    **{k: f"{section}.{k}" for section, keys in SECTION_KEYS.items() for k in keys},
}


#: a finite number > 0, not a bool (the dry check's test of a ratio too)
is_positive = number(0, open_low=True)


def _one_of(names: tuple[str, ...]) -> Rule:
    return Rule(lambda v: v in names, f"one of {', '.join(names)}")


#: the rules of the study and constraint settings (data and budget: TrainConfig's)
_SEARCH_RULES: dict[str, Rule] = {
    "n_trials": integer(1),
    "sampler": _one_of(SAMPLERS),
    "objective": _one_of(OBJECTIVES),
    "pruner": _one_of(PRUNERS),
    "n_jobs": Rule(lambda v: v == AUTO or is_int(v, 1), f"an integer >= 1 or {AUTO} (one per CPU core)"),
    "repeats": integer(1, 100),
    "max_gflops": number(0, open_low=True, optional=True),
    "max_params": number(0, open_low=True, optional=True),
    "fidelity": _one_of(FIDELITIES),
    "rungs": Rule(lambda v: _rung_list(v) is not None, "increasing epochs >= 1, comma-separated (1,3,9)"),
    "eta": integer(2),
    "prescreen": integer(1),
    "proxy": Rule(lambda v: isinstance(v, str) and v != "", "a proxy name (affinity proxies lists them)"),
    "timeout": number(0, open_low=True, optional=True),
}
#: settings whose checked value is converted from what was given
_CONVERT = {"rungs": lambda v: _rung_list(v)}
_UNITS = {
    "n_trials": " (the total number of trials in the study)",
    "eta": " (one trial in eta continues past a rung)",
    "prescreen": " (proposals scored per trained trial; 1: off)",
    "timeout": " (seconds)",
    "max_gflops": " (GFLOPs, fvcore)",
    "max_params": " (millions of parameters)",
}


def _rung_list(value: Any) -> tuple[int, ...] | None:
    """``rungs`` as given (``"1,3,9"`` or a YAML list) as a tuple, or None when it is not a
    non-empty increasing list of integers >= 1."""
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)) or not items:
        return None
    rungs = []
    for item in items:
        text = item.strip() if isinstance(item, str) else item
        if isinstance(text, str) and text.isdigit():
            text = int(text)
        if not isinstance(text, int) or isinstance(text, bool) or text < 1:
            return None
        rungs.append(text)
    if any(b <= a for a, b in itertools.pairwise(rungs)):
        return None
    return tuple(rungs)


def check_setting(key: str, value: Any, where: str | None = None) -> Any:
    """Validate one setting, converted to its kind; ``where`` names it in the message (key
    path or CLI option)."""
    spec = _SEARCH_RULES[key] if key in _SEARCH_RULES else rule(key)
    if not spec(value):
        allowed = spec.allowed + _UNITS.get(key, "")
        raise SpaceError(f"{where or _SETTING_PATHS[key]}: {show(value)} is not allowed; allowed: {allowed}")
    return _CONVERT[key](value) if key in _CONVERT else spec.convert(value)


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
            if key == "enqueue":
                values[key] = _enqueue_list(body[key])
                continue
            values[key] = check_setting(key, body[key])
    return _settings(Settings(), values, lambda key: _SETTING_PATHS[key])


def _enqueue_list(raw: Any) -> tuple[dict[str, Any], ...]:
    """``search.enqueue``'s shape: a list of mappings (their keys and values are checked
    against the space's parameters once the model is read: ``check_enqueue``)."""
    if not isinstance(raw, list):
        raise SpaceError(
            f"search.enqueue: {show(raw)} is not allowed; allowed: a list of mappings "
            "{parameter name: value} (e.g. model.mixer.kind: axial_shift)"
        )
    return tuple(dict(mapping(item, f"search.enqueue[{i}]")) for i, item in enumerate(raw))


def check_enqueue(
    enqueue: tuple[dict[str, Any], ...], distributions: Mapping[str, list[Any] | None]
) -> tuple[dict[str, Any], ...]:
    """Each enqueued design names only the space's parameters, with values they can take
    (a continuous parameter: a number); a SpaceError naming the key path otherwise.

    Returns:
        The designs as Optuna stores them (a list value as its JSON text, ``Choice.labels``).
    """
    import json

    names = tuple(distributions)
    out = []
    for i, params in enumerate(enqueue):
        stored = {}
        for key, value in params.items():
            path = f"search.enqueue[{i}]"
            if isinstance(value, list):
                value = json.dumps(value)
            if key not in distributions:
                raise unknown_key(key, path, names)
            allowed = distributions[key]
            if allowed is None:
                ok = isinstance(value, (int, float)) and not isinstance(value, bool)
                what = "a number in the parameter's range"
            else:
                ok = any(value == v and type(value) is type(v) for v in allowed) or (
                    isinstance(value, int) and not isinstance(value, bool) and value in allowed
                )
                what = f"one of {', '.join(show(v) for v in allowed)}"
            if not ok:
                raise SpaceError(f"{path}.{key}: {show(params[key])} is not allowed; allowed: {what}")
            stored[key] = value
        out.append(stored)
    return tuple(out)


def with_overrides(settings: Settings, **changes: Any) -> Settings:
    """``settings`` with command-line values (None: not given) validated and applied."""
    values = {}
    for key, value in changes.items():
        if value is None:
            continue
        values[key] = check_setting(key, value, _option(key))
    return _settings(settings, values, lambda key: _option(key) if key in values else _SETTING_PATHS[key])


def _option(key: str) -> str:
    return f"--{key.replace('_', '-')}"


def _settings(settings: Settings, values: Mapping[str, Any], where: Callable[[str], str]) -> Settings:
    """``settings`` with checked ``values`` (flat: budget keys and the seed go to ``budget``),
    their combination checked (``check_cheap_signals``; ``where`` names a setting)."""
    budget = {k: v for k, v in values.items() if k in BUDGET_KEYS or k == "seed"}
    rest = {k: v for k, v in values.items() if k not in budget}
    new = dataclasses.replace(settings, budget=dataclasses.replace(settings.budget, **budget), **rest)
    check_cheap_signals(new, where)
    return new


def check_cheap_signals(settings: Settings, where: Callable[[str], str]) -> None:
    """The multi-fidelity and pre-screening settings fit together and with the budget; a
    SpaceError naming the setting (``where(key)``: its option or key path) otherwise."""
    s = settings
    epochs = s.budget.epochs
    if s.fidelity != "asha":
        if s.rungs:
            raise SpaceError(f"{where('rungs')}: rungs are allowed only with fidelity asha (--fidelity asha)")
    elif s.objective != "pareto":
        raise SpaceError(
            f"{where('fidelity')}: asha is allowed only with objective pareto (for --objective accuracy "
            "use --pruner hyperband)"
        )
    elif s.budget.max_steps is not None:
        raise SpaceError(f"{where('fidelity')}: asha counts epochs; allowed only with max_steps null")
    elif s.rungs and s.rungs[-1] > epochs:
        raise SpaceError(
            f"{where('rungs')}: rung {s.rungs[-1]} is beyond the budget's {epochs} epochs; allowed: "
            f"increasing epochs from 1 to {epochs} (the full budget is the last rung)"
        )
    elif len(s.rung_epochs()) < 2:
        raise SpaceError(
            f"{where('rungs') if s.rungs else where('fidelity')}: asha needs a rung below the budget's "
            f"{epochs} epochs; allowed: --rungs with an epoch count < {epochs}, or more epochs"
        )
    if s.prescreen > 1:
        from affinity.proxies import PROXIES

        if s.proxy not in PROXIES:
            raise SpaceError(f"{where('proxy')}: {s.proxy!r} is not a proxy; allowed: {', '.join(PROXIES)}")
