"""Search-space files: YAML -> a validated ``Space`` -> Optuna samples -> ``ModelCfg``.

The whole file is checked before any trial runs: unknown keys, wrong types, empty choices,
inverted ranges, unknown affinities, parameters whose condition can never hold, and a dry
construction of every mixer each stage can take (heads that do not divide a stage's width,
a reflect padding wider than the map, ...). Every error is a ``SpaceError`` whose message
starts with the key path (``model.stages[2].mixer.shift_size``), then the value and what is
allowed. The format is documented in README.md, "The search space file".
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from affinity.errors import AffinityError, ConfigError, SpaceError, closest, is_int, yaml_problem
from affinity.search.kinds import (
    KINDS,
    MIXER_PARAMS,
    Geometry,
    Kind,
    build_mixer,
    parse_kind,
    takes_connection,
)
from affinity.search.params import (
    Choice,
    FloatRange,
    IntRange,
    Value,
    candidates,
    grid_values,
    is_param,
    parse_value,
    suggest,
)

__all__ = [
    "MixerSpec",
    "Settings",
    "Space",
    "StageSpec",
    "config_hash",
    "load_space",
    "parse_space",
    "resolve_space_path",
]

SAMPLERS = ("tpe", "nsga2", "random", "grid", "qmc")
OBJECTIVES = ("pareto", "accuracy")
PRUNERS = ("median", "hyperband", "none")
FAMILIES = ("hierarchical", "isotropic")
#: ModelCfg fields a space may set (fixed or searched) at the model level.
MODEL_FIELDS = (
    "norm",
    "norm_eps",
    "stem",
    "downsample",
    "embed_norm",
    "head_norm",
    "pool",
    "channel_mlp_act",
    "channel_mlp_bias",
    "channel_mlp_norm",
    "layer_scale",
    "drop_path_rate",
    "pos_embed",
)
#: per-stage fields, given at the model level for every stage or in ``model.stages[i]``.
STAGE_FIELDS = ("dim", "depth", "patch_size", "channel_mlp_ratio", "mixer", "pos_mixer")
#: Past this many combinations a stage's dry check samples ends and middles only.
DRY_CHECK_LIMIT = 400


# ---------------------------------------------------------------------------------------
# settings: dataset, budget, study


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


#: the keys each section of a space file takes (the budget ones are TrainConfig's fields)
_SECTION_KEYS = {
    "budget": ("epochs", "max_steps", "batch_size", "lr", "weight_decay", "warmup_fraction",
               "label_smoothing", "augment"),
    "search": ("n_trials", "sampler", "objective", "pruner", "n_jobs"),
    "constraints": ("max_gflops", "max_params"),
}  # fmt: skip
#: the training-budget settings, passed to TrainConfig as they are
BUDGET_KEYS = _SECTION_KEYS["budget"]
#: setting -> its key path in the file
_SETTING_PATHS = {
    "dataset": "dataset",
    "img_size": "img_size",
    "seed": "seed",
    **{k: f"{section}.{k}" for section, keys in _SECTION_KEYS.items() for k in keys},
}


def _pos(v: Any) -> bool:
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
    "lr": (_pos, "a number > 0"),
    "weight_decay": (lambda v: _pos(v) or v == 0, "a number >= 0"),
    "warmup_fraction": (lambda v: isinstance(v, (int, float)) and 0 <= v < 1, "a number in [0, 1)"),
    "label_smoothing": (lambda v: isinstance(v, (int, float)) and 0 <= v < 1, "a number in [0, 1)"),
    "augment": (lambda v: isinstance(v, bool), "true or false"),
    "n_trials": (lambda v: is_int(v, 1), "an integer >= 1 (the total number of trials in the study)"),
    "sampler": (lambda v: v in SAMPLERS, f"one of {', '.join(SAMPLERS)}"),
    "objective": (lambda v: v in OBJECTIVES, f"one of {', '.join(OBJECTIVES)}"),
    "pruner": (lambda v: v in PRUNERS, f"one of {', '.join(PRUNERS)}"),
    "n_jobs": (lambda v: is_int(v, 1), "an integer >= 1"),
    "max_gflops": (lambda v: v is None or _pos(v), "null or a number > 0 (GFLOPs, fvcore)"),
    "max_params": (lambda v: v is None or _pos(v), "null or a number > 0 (millions of parameters)"),
}


def check_setting(key: str, value: Any, where: str | None = None) -> Any:
    """Validate one setting; ``where`` names it in the message (key path or CLI option)."""
    ok, allowed = _SETTING_RULES[key]
    if not ok(value):
        raise SpaceError(f"{where or _SETTING_PATHS[key]}: {_show(value)} is not allowed; allowed: {allowed}")
    if key in ("lr", "weight_decay", "warmup_fraction", "label_smoothing", "max_gflops", "max_params"):
        return None if value is None else float(value)
    return value


def _show(value: Any) -> str:
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)


# ---------------------------------------------------------------------------------------
# the model part


@dataclass(frozen=True)
class MixerSpec:
    """A mixer as the space describes it: its kind(s) and parameter leaves.

    Args:
        path: key path (``model.mixer``, ``model.stages[1].mixer``); Optuna names its
            parameters ``<path>.<key>``.
        kind: a kind name or a ``Choice`` of kind names.
        params: kind and mixer parameters, each fixed or searched.
    """

    path: str
    kind: Value
    params: dict[str, Value]

    def kind_options(self) -> list[tuple[Kind, ...]]:
        names = self.kind.values if isinstance(self.kind, Choice) else (self.kind,)
        return [parse_kind(n, f"{self.path}.kind") for n in names]


@dataclass(frozen=True)
class StageSpec:
    """One stage: each field a leaf, or a reference ``('model.dims', i)`` into a list choice."""

    index: int
    dim: Any
    depth: Any
    patch_size: Any
    channel_mlp_ratio: Any
    mixer: MixerSpec
    pos_mixer: MixerSpec | None


@dataclass(frozen=True)
class Ref:
    """Element ``index`` of the list the model-level leaf ``path`` samples."""

    path: str
    index: int


@dataclass(frozen=True)
class Space:
    """A validated search space.

    Args:
        name: the study's default name.
        description: free text.
        source: the file it was read from ('' for a string).
        settings: data, budget, study and constraints (before command-line overrides).
        family: ``hierarchical`` or ``isotropic``.
        stages: one ``StageSpec`` per stage.
        model_fields: ``ModelCfg`` fields set at the model level (leaves).
        lists: model-level list leaves sampled as a whole (``model.dims: {choice: [[..], [..]]}``).
    """

    name: str
    description: str
    source: str
    settings: Settings
    family: str
    stages: tuple[StageSpec, ...]
    model_fields: dict[str, Value]
    lists: dict[str, Choice] = field(default_factory=dict)

    # -- sampling ---------------------------------------------------------------------
    def sample(self, trial: Any, img_size: int | None = None) -> Any:
        """Sample ``trial`` (Optuna, define-by-run) into a ``ModelCfg``.

        Parameters are named by key path; a mixer's parameters are sampled only where the
        chosen kind takes them, ``alpha``/``beta`` only where the coefficients use them.
        """
        from affinity.models.config import ModelCfg, StageCfg

        img = img_size or self.settings.img_size
        sampled: dict[str, Any] = {}

        def leaf(name: str, value: Any) -> Any:
            if isinstance(value, Ref):
                if value.path not in sampled:
                    sampled[value.path] = suggest(trial, value.path, self.lists[value.path])
                return sampled[value.path][value.index]
            if isinstance(value, _Named):
                name, value = value._name, value.value
            if name not in sampled:
                sampled[name] = suggest(trial, name, value)
            return sampled[name]

        fields = {k: leaf(f"model.{k}", v) for k, v in self.model_fields.items()}
        mixers: dict[str, tuple[tuple[Kind, ...], dict[str, Any]]] = {}
        stages = []
        stride = 1
        for st in self.stages:
            prefix = f"model.stages[{st.index}]"
            dim = leaf(_leaf_name(prefix, "dim", st.dim), st.dim)
            depth = leaf(_leaf_name(prefix, "depth", st.depth), st.depth)
            patch = leaf(_leaf_name(prefix, "patch_size", st.patch_size), st.patch_size)
            ratio = leaf(_leaf_name(prefix, "channel_mlp_ratio", st.channel_mlp_ratio), st.channel_mlp_ratio)
            stride *= patch
            geo = Geometry(dim, (img // stride, img // stride))
            stage_kw: dict[str, Any] = {}
            for key, spec in (("mixer", st.mixer), ("pos_mixer", st.pos_mixer)):
                if spec is None:
                    continue
                if spec.path not in mixers:
                    mixers[spec.path] = _sample_mixer(trial, spec)
                kinds, values = mixers[spec.path]
                stage_kw[key] = build_mixer(kinds, values, geo)
            stages.append(
                StageCfg(dim=dim, depth=depth, patch_size=patch, channel_mlp_ratio=ratio, **stage_kw)
            )
        return ModelCfg(family=self.family, stages=tuple(stages), **fields)

    def distributions(self) -> dict[str, list[Any] | None]:
        """Every parameter name the space can sample, with its values (None: continuous)."""
        out: dict[str, list[Any] | None] = {}
        for k, v in self.model_fields.items():
            if is_param(v):
                out[f"model.{k}"] = grid_values(v)
        for path, choice in self.lists.items():
            out[path] = choice.labels()
        seen: set[str] = set()
        for st in self.stages:
            prefix = f"model.stages[{st.index}]"
            for key in ("dim", "depth", "patch_size", "channel_mlp_ratio"):
                value = getattr(st, key)
                name = _leaf_name(prefix, key, value)
                if isinstance(value, _Named):
                    value = value.value
                if is_param(value):
                    out[name] = grid_values(value)
            for spec in (st.mixer, st.pos_mixer):
                if spec is None or spec.path in seen:
                    continue
                seen.add(spec.path)
                if isinstance(spec.kind, Choice):
                    out[f"{spec.path}.kind"] = spec.kind.labels()
                for key, value in spec.params.items():
                    if is_param(value):
                        out[f"{spec.path}.{key}"] = grid_values(value)
        return out

    def searched(self) -> list[str]:
        """Names of the searched parameters, in the order they appear."""
        return list(self.distributions())


def _leaf_name(prefix: str, key: str, value: Any) -> str:
    """Optuna name of a stage leaf: model-level leaves keep their model-level name."""
    return getattr(value, "_name", None) or f"{prefix}.{key}"


class _Named:
    """A model-level leaf shared by every stage, sampled once under its model-level name."""

    def __init__(self, name: str, value: Any) -> None:
        self._name = name
        self.value = value


def _sample_mixer(trial: Any, spec: MixerSpec) -> tuple[tuple[Kind, ...], dict[str, Any]]:
    """Define-by-run: the kind first, then only the parameters that kind takes."""
    kind_name = suggest(trial, f"{spec.path}.kind", spec.kind)
    kinds = parse_kind(kind_name, f"{spec.path}.kind")
    taken = {k for kind in kinds for k in kind.params}
    values: dict[str, Any] = {}
    for key, value in spec.params.items():
        if key in taken:
            values[key] = suggest(trial, f"{spec.path}.{key}", value)
    if "connection" in spec.params and takes_connection(kinds):
        values["connection"] = suggest(trial, f"{spec.path}.connection", spec.params["connection"])
    parallel = values.get("connection", "parallel") == "parallel"
    if "coefficients" in spec.params and parallel:
        values["coefficients"] = suggest(trial, f"{spec.path}.coefficients", spec.params["coefficients"])
    if values.get("coefficients", "sum") in ("fixed", "learnable"):
        if "alpha" in spec.params and any(k.dynamic for k in kinds):
            values["alpha"] = suggest(trial, f"{spec.path}.alpha", spec.params["alpha"])
        if "beta" in spec.params and any(not k.dynamic for k in kinds):
            values["beta"] = suggest(trial, f"{spec.path}.beta", spec.params["beta"])
    return kinds, values


# ---------------------------------------------------------------------------------------
# parsing


_TOP_KEYS = ("name", "description", "dataset", "img_size", "seed", "budget", "search", "constraints", "model")
_MODEL_KEYS = ("family", "dims", "depths", *STAGE_FIELDS, "stages", *MODEL_FIELDS)


def _unknown(key: Any, path: str, allowed: tuple[str, ...] | list[str]) -> SpaceError:
    near = closest(str(key), allowed)
    hint = f" (did you mean {', '.join(near)}?)" if near else ""
    where = f"{path}.{key}" if path else str(key)
    return SpaceError(f"{where}: unknown key{hint}; allowed: {', '.join(allowed)}")


def _mapping(raw: Any, path: str, what: str = "a mapping") -> Mapping[str, Any]:
    if not isinstance(raw, Mapping):
        raise SpaceError(f"{path}: {_show(raw)} is not allowed; allowed: {what}")
    return raw


def parse_space(raw: Any, *, source: str = "", default_name: str = "space") -> Space:
    """Validate a parsed YAML document into a ``Space`` (see the module docstring)."""
    doc = _mapping(raw, source or "space file", "a mapping with a model section")
    for key in doc:
        if key not in _TOP_KEYS:
            raise _unknown(key, "", _TOP_KEYS)
    name = doc.get("name", default_name)
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
        raise SpaceError(
            f"name: {_show(name)} is not allowed; allowed: letters, digits, _ . - (a folder name)"
        )
    description = doc.get("description", "")
    if not isinstance(description, str):
        raise SpaceError(f"description: {_show(description)} is not allowed; allowed: text")
    values: dict[str, Any] = {}
    for key in ("dataset", "img_size", "seed"):
        if key in doc:
            values[key] = check_setting(key, doc[key])
    for section, keys in _SECTION_KEYS.items():
        if section not in doc:
            continue
        body = _mapping(doc[section], section)
        for key in body:
            if key not in keys:
                raise _unknown(key, section, keys)
            values[key] = check_setting(key, body[key])
    settings = Settings(**values)
    if "model" not in doc:
        raise SpaceError("model: missing; allowed: a mapping with family, dims, depths and mixer")
    space = _parse_model(_mapping(doc["model"], "model"), name, description, source, settings)
    check_space(space)
    return space


def _parse_model(
    model: Mapping[str, Any], name: str, description: str, source: str, settings: Settings
) -> Space:
    for key in model:
        if key not in _MODEL_KEYS:
            raise _unknown(key, "model", _MODEL_KEYS)
    family = model.get("family", "hierarchical")
    if family not in FAMILIES:
        raise SpaceError(
            f"model.family: {_show(family)} is not allowed; allowed: one of {', '.join(FAMILIES)}"
        )

    lists: dict[str, Choice] = {}
    per_stage: dict[str, list[Any]] = {}
    for plural, single in (("dims", "dim"), ("depths", "depth")):
        if plural not in model:
            continue
        if single in model:
            raise SpaceError(f"model.{single}: given with model.{plural}; allowed: one of the two")
        raw = parse_value(model[plural], f"model.{plural}")
        path = f"model.{plural}"
        if isinstance(raw, Choice):
            lengths = set()
            for i, option in enumerate(raw.values):
                if not isinstance(option, list) or not option:
                    raise SpaceError(
                        f"{path}.choice[{i}]: {_show(option)} is not allowed; "
                        "allowed: a non-empty list of integers"
                    )
                for j, v in enumerate(option):
                    if not is_int(v, 1):
                        raise SpaceError(
                            f"{path}.choice[{i}][{j}]: {_show(v)} is not allowed; allowed: an integer >= 1"
                        )
                lengths.add(len(option))
            if len(lengths) > 1:
                raise SpaceError(
                    f"{path}.choice: lists of lengths {sorted(lengths)}; "
                    "allowed: one length (the number of stages)"
                )
            lists[path] = raw
            per_stage[single] = [Ref(path, i) for i in range(lengths.pop())]
        elif isinstance(raw, list) and raw:
            per_stage[single] = [
                _stage_int(parse_value(v, f"{path}[{i}]"), f"{path}[{i}]") for i, v in enumerate(raw)
            ]
            per_stage[single] = [
                _Named(f"{path}[{i}]", v) if is_param(v) else v for i, v in enumerate(per_stage[single])
            ]
        else:
            raise SpaceError(
                f"{path}: {_show(model[plural])} is not allowed; "
                "allowed: a non-empty list (one per stage) or a choice of lists"
            )

    stage_list = model.get("stages")
    if stage_list is not None and (not isinstance(stage_list, list) or not stage_list):
        raise SpaceError(
            f"model.stages: {_show(stage_list)} is not allowed; allowed: a non-empty list of stage mappings"
        )
    counts = {f"model.{'dims' if k == 'dim' else 'depths'}": len(v) for k, v in per_stage.items()}
    if stage_list is not None:
        counts["model.stages"] = len(stage_list)
    if len(set(counts.values())) > 1:
        detail = ", ".join(f"{k} has {n}" for k, n in counts.items())
        raise SpaceError(
            f"{next(iter(counts))}: stage counts disagree ({detail}); allowed: one entry per stage everywhere"
        )
    n_stages = next(iter(counts.values()), 1)
    if family == "isotropic" and n_stages != 1:
        raise SpaceError(
            f"model.family: isotropic with {n_stages} stages; allowed: one stage (or family: hierarchical)"
        )

    shared: dict[str, Any] = {}
    for key in ("dim", "depth", "patch_size", "channel_mlp_ratio"):
        if key in model:
            value = parse_value(model[key], f"model.{key}")
            shared[key] = _Named(f"model.{key}", value) if is_param(value) else value
    for key in ("mixer", "pos_mixer"):
        if key in model and model[key] is not None:
            shared[key] = _parse_mixer(model[key], f"model.{key}")

    stages = []
    for i in range(n_stages):
        path = f"model.stages[{i}]"
        own = {} if stage_list is None else dict(_mapping(stage_list[i], path, "a mapping of stage fields"))
        for key in own:
            if key not in STAGE_FIELDS:
                raise _unknown(key, path, STAGE_FIELDS)
        fields: dict[str, Any] = {}
        for key in ("dim", "depth", "patch_size", "channel_mlp_ratio"):
            if key in own:
                fields[key] = parse_value(own[key], f"{path}.{key}")
            elif key in per_stage:
                fields[key] = per_stage[key][i]
            elif key in shared:
                fields[key] = shared[key]
            elif key == "patch_size":
                fields[key] = 4 if i == 0 else 2
            elif key == "channel_mlp_ratio":
                fields[key] = 4.0
            else:
                raise SpaceError(
                    f"{path}.{key}: missing; "
                    f"allowed: set model.{key}s (one per stage), model.{key} or {path}.{key}"
                )
        mixers: dict[str, MixerSpec | None] = {}
        for key in ("mixer", "pos_mixer"):
            if key in own:
                mixers[key] = None if own[key] is None else _parse_mixer(own[key], f"{path}.{key}")
            else:
                mixers[key] = shared.get(key)
        if mixers["mixer"] is None:
            raise SpaceError(f"{path}.mixer: missing; allowed: set model.mixer (every stage) or {path}.mixer")
        stages.append(StageSpec(i, mixer=mixers["mixer"], pos_mixer=mixers["pos_mixer"], **fields))

    model_fields = {}
    for key in MODEL_FIELDS:
        if key in model:
            model_fields[key] = parse_value(model[key], f"model.{key}")
    return Space(name, description, source, settings, family, tuple(stages), model_fields, lists)


def _stage_int(value: Any, path: str) -> Any:
    if isinstance(value, FloatRange):
        raise SpaceError(
            f"{path}: a float range is not allowed; allowed: an integer, a choice of integers or an int range"
        )
    for v in candidates(value):
        if not is_int(v, 1):
            raise SpaceError(f"{path}: {_show(v)} is not allowed; allowed: an integer >= 1")
    return value


def _parse_mixer(raw: Any, path: str) -> MixerSpec:
    if isinstance(raw, str):
        raw = {"kind": raw}
    body = _mapping(raw, path, "a kind name or a mapping with kind and its parameters")
    if "kind" not in body:
        raise SpaceError(f"{path}.kind: missing; allowed: one of {', '.join(KINDS)} (or a choice, or a+b)")
    kind = parse_value(body["kind"], f"{path}.kind")
    if isinstance(kind, (IntRange, FloatRange)):
        raise SpaceError(
            f"{path}.kind: a numeric range is not allowed; allowed: a kind name or a choice of kind names"
        )
    spec = MixerSpec(path, kind, {})
    options = spec.kind_options()
    kind_keys = sorted({k for kind in KINDS.values() for k in kind.params})
    allowed = ("kind", *kind_keys, *MIXER_PARAMS)
    params: dict[str, Value] = {}
    for key in body:
        if key == "kind":
            continue
        if key not in allowed:
            raise _unknown(key, path, allowed)
        value = parse_value(body[key], f"{path}.{key}")
        params[key] = value
        if key in MIXER_PARAMS:
            rule = MIXER_PARAMS[key].rule
        else:
            takers = [k for k in KINDS.values() if key in k.params]
            if not any(key in kind.params for option in options for kind in option):
                names = [o if isinstance(o, str) else str(o) for o in _kind_names(kind)]
                raise SpaceError(
                    f"{path}.{key}: only exists where the kind is {' or '.join(k.name for k in takers)}, "
                    f"and this mixer's kind is {' or '.join(names)}; "
                    f"allowed: remove {key} or choose such a kind"
                )
            rule = next(k.params[key] for k in takers)
        if isinstance(value, FloatRange) and key not in ("alpha", "beta", "token_mlp_ratio"):
            raise SpaceError(f"{path}.{key}: a float range is not allowed; allowed: {rule.allowed}")
        for v in candidates(value):
            if not rule.ok(v):
                raise SpaceError(f"{path}.{key}: {_show(v)} is not allowed; allowed: {rule.allowed}")
    spec = MixerSpec(path, kind, params)
    _check_mixer_conditions(spec, options)
    return spec


def _kind_names(kind: Value) -> list[Any]:
    return list(kind.values) if isinstance(kind, Choice) else [kind]


def _check_mixer_conditions(spec: MixerSpec, options: list[tuple[Kind, ...]]) -> None:
    """A mixer parameter whose condition can never hold is an error (it would never be used)."""
    p = spec.params
    if "connection" in p and not any(takes_connection(o) for o in options):
        raise SpaceError(
            f"{spec.path}.connection: only exists with {MIXER_PARAMS['connection'].condition}; "
            f"this mixer's kind is {' or '.join(map(str, _kind_names(spec.kind)))}; "
            "allowed: remove connection"
        )
    conns = candidates(p.get("connection", "parallel"))
    if "coefficients" in p and "parallel" not in conns:
        raise SpaceError(
            f"{spec.path}.coefficients: only exists in a parallel mixer and connection is serial; "
            "allowed: remove coefficients or allow connection parallel"
        )
    coefs = candidates(p.get("coefficients", "sum"))
    for key, wants in (("alpha", True), ("beta", False)):
        if key not in p:
            continue
        if not {"fixed", "learnable"} & set(coefs):
            raise SpaceError(
                f"{spec.path}.{key}: only exists when coefficients is fixed or learnable, and coefficients "
                f"here is {' or '.join(map(str, coefs))}; "
                f"allowed: set coefficients to fixed or learnable, or remove {key}"
            )
        if not any(any(k.dynamic == wants for k in o) for o in options):
            which = "a dynamic (attention)" if wants else "a static"
            raise SpaceError(
                f"{spec.path}.{key}: only exists with {which} branch, and no kind of this mixer has one; "
                f"allowed: remove {key}"
            )


# ---------------------------------------------------------------------------------------
# whole-space checks (geometry and a dry construction of every mixer a stage can take)


def _values(value: Any, lists: dict[str, Choice]) -> list[Any]:
    if isinstance(value, Ref):
        return sorted({option[value.index] for option in lists[value.path].values})
    if isinstance(value, _Named):
        return candidates(value.value)
    return candidates(value)


def _where(value: Any, default: str) -> str:
    if isinstance(value, Ref):
        return value.path
    if isinstance(value, _Named):
        return value._name
    return default


def check_space(space: Space, img_size: int | None = None) -> None:
    """Geometry and dry-construction checks (also rerun when the command line changes img_size)."""
    img = img_size or space.settings.img_size
    strides = {1}
    users: dict[str, tuple[MixerSpec, list[tuple[int, list[int], list[int]]]]] = {}
    for st in space.stages:
        path = f"model.stages[{st.index}]"
        patch_where = _where(st.patch_size, f"{path}.patch_size")
        patches = _values(st.patch_size, space.lists)
        for v in patches:
            if not is_int(v, 1):
                raise SpaceError(f"{patch_where}: {_show(v)} is not allowed; allowed: an integer >= 1")
        strides = {s * p for s in strides for p in patches}
        bad = sorted(s for s in strides if img % s)
        if bad:
            raise SpaceError(
                f"{patch_where}: a total stride of {bad[0]} by stage {st.index} "
                f"does not divide img_size {img}; "
                f"allowed: patch sizes whose product divides the image size"
            )
        for key in ("dim", "depth"):
            value = getattr(st, key)
            for v in _values(value, space.lists):
                if not is_int(v, 1):
                    raise SpaceError(
                        f"{_where(value, f'{path}.{key}')}: {_show(v)} is not allowed; "
                        "allowed: an integer >= 1"
                    )
        ratio = st.channel_mlp_ratio
        for v in _values(ratio, space.lists):
            if not _pos(v):
                raise SpaceError(
                    f"{_where(ratio, f'{path}.channel_mlp_ratio')}: {_show(v)} is not allowed; "
                    "allowed: a number > 0"
                )
        dims = _values(st.dim, space.lists)
        maps = sorted({img // s for s in strides})
        for spec in (st.mixer, st.pos_mixer):
            if spec is not None:
                users.setdefault(spec.path, (spec, []))[1].append((st.index, dims, maps))
    for spec, stages in users.values():
        _dry_check(spec, stages)
    _check_model_fields(space)


#: affinity constructor argument -> the space's name for it
_ALIASES = {"window_size": "window"}


def _try_build(option: tuple[Kind, ...], values: dict[str, Any], dim: int, size: int) -> str | None:
    """Build the mixer's affinities at one width and map size; the error message, or None."""
    from affinity.models.config import affinity_params
    from affinity.ops import create_affinity

    try:
        mixer = build_mixer(option, values, Geometry(dim, (size, size)))
        for branch in mixer.branches:
            accepted = affinity_params(branch.affinity)
            params = dict(branch.params)
            unknown = set(params) - accepted if accepted is not None else set()
            if unknown:
                return (
                    f"{sorted(unknown)[0]}=... is not accepted by affinity {branch.affinity!r} "
                    f"(it takes {sorted(accepted or ())})"
                )
            create_affinity(branch.affinity, dim=dim, hw=(size, size), **params)
    except AffinityError as exc:
        return str(exc)
    return None


def _dry_check(spec: MixerSpec, stages: list[tuple[int, list[int], list[int]]]) -> None:
    """Build every affinity the mixer can take, at every stage that uses it.

    A combination works when, at every stage using the mixer, some width and map size the
    stage can have builds it. A kind, or a parameter value, for which no combination works
    is an error (every trial with it would be rejected); a value that fails only with some
    other values is allowed, and such trials are recorded as rejected with the reason.
    """
    cache: dict[tuple[Any, ...], str | None] = {}
    for option in spec.kind_options():
        keys = [k for kind in option for k in kind.params if k in spec.params]
        for key in ("connection", "coefficients", "alpha", "beta"):
            if key in spec.params:
                keys.append(key)
        grids = [candidates(spec.params[k]) for k in keys]
        worked: dict[tuple[str, str], bool] = {}
        first_error: dict[tuple[str, str], str] = {}
        any_ok = False
        last_error = ""
        for combo in itertools.islice(itertools.product(*grids), DRY_CHECK_LIMIT):
            values = dict(zip(keys, combo))
            ok = True
            for stage, dims, maps in stages:
                errors = []
                for dim, size in itertools.product(dims, maps):
                    ck = (tuple(k.name for k in option), json.dumps(values, sort_keys=True), dim, size)
                    if ck not in cache:
                        cache[ck] = _try_build(option, values, dim, size)
                    if cache[ck] is None:
                        break
                    errors.append(f"stage {stage} (dim {dim}, map {size}x{size}): {cache[ck]}")
                else:
                    ok = False
                    last_error = errors[0]
                    break
            any_ok = any_ok or ok
            for key, value in values.items():
                slot = (key, json.dumps(value))
                worked[slot] = worked.get(slot, False) or ok
                if not ok:
                    first_error.setdefault(slot, last_error)
        name = "+".join(k.name for k in option)
        if not any_ok:
            m = re.search(r": (\w+)=", last_error)
            found = _ALIASES.get(m.group(1), m.group(1)) if m else None
            if found is not None and found in spec.params:
                key = found
                shown = f"{_show(spec.params[key])} " if not is_param(spec.params[key]) else ""
                raise SpaceError(
                    f"{spec.path}.{key}: {shown}cannot be built with kind {name} "
                    f"and any of its values: {last_error}"
                )
            raise SpaceError(f"{spec.path}.kind: {name} cannot be built with any of its values: {last_error}")
        for (key, shown), good in worked.items():
            if not good:
                raise SpaceError(
                    f"{spec.path}.{key}: {shown} cannot be built with kind {name} and any choice of the "
                    f"other parameters: {first_error[(key, shown)]}"
                )


def _check_model_fields(space: Space) -> None:
    """Each model-level field's every value must be a valid ``ModelCfg`` (checked one at a time)."""
    from affinity.models.config import ModelCfg, StageCfg
    from affinity.ops.config import BranchCfg, MixerCfg

    stage = StageCfg(dim=8, depth=1, mixer=MixerCfg(branches=(BranchCfg("identity"),)))
    fixed = {k: v for k, v in space.model_fields.items() if not is_param(v)}
    n = 1 if space.family == "isotropic" else len(space.stages)
    for key, value in space.model_fields.items():
        for v in candidates(value):
            try:
                ModelCfg(family=space.family, stages=(stage,) * n, **{**fixed, key: v})
            except ConfigError as exc:
                raise SpaceError(f"model.{key}: {_show(v)} is not allowed: {exc}") from None
            except TypeError as exc:
                raise SpaceError(f"model.{key}: {_show(v)} is not allowed: {exc}") from None


# ---------------------------------------------------------------------------------------
# files


def _package_spaces() -> dict[str, Path]:
    """The shipped spaces installed as package data ``affinity.search_spaces`` (a namespace
    package: no ``__init__.py``), by file name."""
    try:
        root = resources.files("affinity.search_spaces")
        found = {}
        for entry in root.iterdir():
            if entry.name.endswith(".yaml") and entry.is_file():
                with resources.as_file(entry) as real:  # a real file: its own path, kept
                    found[entry.name] = Path(real)
        return found
    except (ModuleNotFoundError, TypeError, OSError, NotImplementedError):
        return {}


def shipped_spaces_paths() -> dict[str, Path]:
    """Shipped spaces by file name: the installed package data, else the repo's folder."""
    found = _package_spaces()
    if not found:
        repo = Path(__file__).resolve().parents[2] / "search_spaces"
        found = {p.name: p for p in repo.glob("*.yaml")} if repo.is_dir() else {}
    return found


def shipped_spaces() -> list[str]:
    return sorted(shipped_spaces_paths())


def resolve_space_path(name: str | Path) -> Path:
    """A path first, then a shipped space by file name (``shifts.yaml`` or ``shifts``)."""
    path = Path(name).expanduser()
    if path.is_file():
        return path
    found = shipped_spaces_paths()
    if path.name == str(name):
        for candidate in (path.name, f"{path.name}.yaml"):
            if candidate in found:
                return found[candidate]
    shipped = sorted(found)
    near = closest(str(name), shipped)
    hint = f"; did you mean {', '.join(near)}?" if near else ""
    raise SpaceError(
        f"--space: {str(name)!r} is neither a file nor a shipped space{hint} (shipped: {', '.join(shipped)})"
    )


def load_space(name: str | Path) -> Space:
    """Read, parse and validate a space file (a path, or a shipped space's name)."""
    import yaml

    path = resolve_space_path(name)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SpaceError(f"{path}: cannot be read: {exc}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SpaceError(f"{path}: not valid YAML: {yaml_problem(exc)}") from None
    if raw is None:
        raise SpaceError(f"{path}: the file is empty; allowed: a mapping with a model section")
    return parse_space(raw, source=str(path), default_name=path.stem)


def config_hash(cfg: Any) -> str:
    """12 hex digits identifying a model configuration: ``ModelCfg.fingerprint()``."""
    from affinity.models.config import ModelCfg

    return (cfg if isinstance(cfg, ModelCfg) else ModelCfg.from_dict(cfg)).fingerprint()


def with_overrides(settings: Settings, **changes: Any) -> Settings:
    """``settings`` with command-line values (None: not given) validated and applied."""
    values = {}
    for key, value in changes.items():
        if value is None:
            continue
        values[key] = check_setting(key, value, f"--{key.replace('_', '-')}")
    return dataclasses.replace(settings, **values)
