"""A space file's YAML document -> a validated ``Space``.

The document is read top-down: settings (``settings.parse_settings``), the model's family,
its per-stage lists, the fields shared by every stage, each stage, each mixer. Every error
is a ``SpaceError`` whose message starts with the key path. The whole-space checks
(geometry, dry construction) run last, in ``_dry``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from affinity.errors import SpaceError, check_name, is_int
from affinity.models.config import FAMILIES
from affinity.search._dry import check_space
from affinity.search._messages import mapping, show, unknown_key
from affinity.search._schema import (
    MODEL_FIELDS,
    STAGE_FIELDS,
    STAGE_LEAVES,
    MixerSpec,
    Named,
    Ref,
    Space,
    StageSpec,
)
from affinity.search.kinds import MIXER_PARAMS, Kind, kinds, takes_connection
from affinity.search.params import Choice, FloatRange, IntRange, Value, candidates, is_param, parse_value
from affinity.search.settings import SECTION_KEYS, TOP_KEYS, Settings, check_enqueue, parse_settings

_TOP_KEYS = ("name", "description", *TOP_KEYS, *SECTION_KEYS, "model")
_MODEL_KEYS = ("family", "dims", "depths", *STAGE_FIELDS, "stages", *MODEL_FIELDS)
#: a stage leaf's value when no key of the file sets it (None: it must be set)
_STAGE_DEFAULTS = {"patch_size": lambda i: 4 if i == 0 else 2, "channel_mlp_ratio": lambda i: 4.0}


def parse_space(raw: Any, *, source: str = "", default_name: str = "space") -> Space:
    """Validate a parsed YAML document into a ``Space`` (see ``affinity.search.space``)."""
    doc = mapping(raw, source or "space file", "a mapping with a model section")
    for key in doc:
        if key not in _TOP_KEYS:
            raise unknown_key(key, "", _TOP_KEYS)
    name = doc.get("name", default_name)
    name = check_name("name", name, SpaceError)
    description = doc.get("description", "")
    if not isinstance(description, str):
        raise SpaceError(f"description: {show(description)} is not allowed; allowed: text")
    settings = parse_settings(doc)
    if "model" not in doc:
        raise SpaceError("model: missing; allowed: a mapping with family, dims, depths and mixer")
    space = _parse_model(mapping(doc["model"], "model"), name, description, source, settings)
    if settings.enqueue:
        known = check_enqueue(settings.enqueue, space.distributions())
        space = dataclasses.replace(space, settings=dataclasses.replace(settings, enqueue=known))
    check_space(space)
    return space


def _parse_model(
    model: Mapping[str, Any], name: str, description: str, source: str, settings: Settings
) -> Space:
    for key in model:
        if key not in _MODEL_KEYS:
            raise unknown_key(key, "model", _MODEL_KEYS)
    family = model.get("family", "hierarchical")
    if family not in FAMILIES:
        raise SpaceError(
            f"model.family: {show(family)} is not allowed; allowed: one of {', '.join(FAMILIES)}"
        )
    lists, per_stage = _parse_stage_lists(model)
    stage_list = model.get("stages")
    if stage_list is not None and (not isinstance(stage_list, list) or not stage_list):
        raise SpaceError(
            f"model.stages: {show(stage_list)} is not allowed; allowed: a non-empty list of stage mappings"
        )
    n_stages = _count_stages(per_stage, stage_list, family)
    shared = _parse_shared(model)
    own = [{} if stage_list is None else stage_list[i] for i in range(n_stages)]
    stages = tuple(_parse_stage(i, own[i], per_stage, shared) for i in range(n_stages))
    model_fields = {k: parse_value(model[k], f"model.{k}") for k in MODEL_FIELDS if k in model}
    return Space(name, description, source, settings, family, stages, model_fields, lists)


def _parse_stage_lists(model: Mapping[str, Any]) -> tuple[dict[str, Choice], dict[str, list[Any]]]:
    """``model.dims`` / ``model.depths``: the list choices sampled whole, and per-stage leaves."""
    lists: dict[str, Choice] = {}
    per_stage: dict[str, list[Any]] = {}
    for plural, single in (("dims", "dim"), ("depths", "depth")):
        if plural not in model:
            continue
        if single in model:
            raise SpaceError(f"model.{single}: given with model.{plural}; allowed: one of the two")
        path = f"model.{plural}"
        raw = parse_value(model[plural], path)
        if isinstance(raw, Choice):
            lists[path] = raw
            per_stage[single] = [Ref(path, i) for i in range(_list_choice_length(raw, path))]
        elif isinstance(raw, list) and raw:
            leaves = [_stage_int(parse_value(v, f"{path}[{i}]"), f"{path}[{i}]") for i, v in enumerate(raw)]
            per_stage[single] = [Named(f"{path}[{i}]", v) if is_param(v) else v for i, v in enumerate(leaves)]
        else:
            raise SpaceError(
                f"{path}: {show(model[plural])} is not allowed; "
                "allowed: a non-empty list (one per stage) or a choice of lists"
            )
    return lists, per_stage


def _list_choice_length(choice: Choice, path: str) -> int:
    """A choice of per-stage lists: each a non-empty list of integers >= 1, all one length."""
    lengths = set()
    for i, option in enumerate(choice.values):
        if not isinstance(option, list) or not option:
            raise SpaceError(
                f"{path}.choice[{i}]: {show(option)} is not allowed; allowed: a non-empty list of integers"
            )
        for j, v in enumerate(option):
            if not is_int(v, 1):
                raise SpaceError(
                    f"{path}.choice[{i}][{j}]: {show(v)} is not allowed; allowed: an integer >= 1"
                )
        lengths.add(len(option))
    if len(lengths) > 1:
        raise SpaceError(
            f"{path}.choice: lists of lengths {sorted(lengths)}; allowed: one length (the number of stages)"
        )
    return lengths.pop()


def _count_stages(per_stage: dict[str, list[Any]], stage_list: list[Any] | None, family: str) -> int:
    """The number of stages every per-stage list and ``model.stages`` agree on (1 if none)."""
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
    return n_stages


def _parse_shared(model: Mapping[str, Any]) -> dict[str, Any]:
    """Stage fields given once at the model level for every stage."""
    shared: dict[str, Any] = {}
    for key in STAGE_LEAVES:
        if key in model:
            value = parse_value(model[key], f"model.{key}")
            shared[key] = Named(f"model.{key}", value) if is_param(value) else value
    for key in ("mixer", "pos_mixer"):
        if key in model and model[key] is not None:
            shared[key] = _parse_mixer(model[key], f"model.{key}")
    return shared


def _parse_stage(i: int, raw: Any, per_stage: dict[str, list[Any]], shared: dict[str, Any]) -> StageSpec:
    """Stage ``i``: its own keys first, then the per-stage lists, the shared fields, defaults."""
    path = f"model.stages[{i}]"
    own = dict(mapping(raw, path, "a mapping of stage fields"))
    for key in own:
        if key not in STAGE_FIELDS:
            raise unknown_key(key, path, STAGE_FIELDS)
    fields: dict[str, Any] = {}
    for key in STAGE_LEAVES:
        if key in own:
            fields[key] = parse_value(own[key], f"{path}.{key}")
        elif key in per_stage:
            fields[key] = per_stage[key][i]
        elif key in shared:
            fields[key] = shared[key]
        elif key in _STAGE_DEFAULTS:
            fields[key] = _STAGE_DEFAULTS[key](i)
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
    return StageSpec(i, mixer=mixers["mixer"], pos_mixer=mixers["pos_mixer"], **fields)


def _stage_int(value: Any, path: str) -> Any:
    if isinstance(value, FloatRange):
        raise SpaceError(
            f"{path}: a float range is not allowed; allowed: an integer, a choice of integers or an int range"
        )
    for v in candidates(value):
        if not is_int(v, 1):
            raise SpaceError(f"{path}: {show(v)} is not allowed; allowed: an integer >= 1")
    return value


def _parse_mixer(raw: Any, path: str) -> MixerSpec:
    if isinstance(raw, str):
        raw = {"kind": raw}
    body = mapping(raw, path, "a kind name or a mapping with kind and its parameters")
    if "kind" not in body:
        raise SpaceError(f"{path}.kind: missing; allowed: one of {', '.join(kinds())} (or a choice, or a+b)")
    kind = parse_value(body["kind"], f"{path}.kind")
    if isinstance(kind, (IntRange, FloatRange)):
        raise SpaceError(
            f"{path}.kind: a numeric range is not allowed; allowed: a kind name or a choice of kind names"
        )
    options = MixerSpec(path, kind, {}).kind_options()
    kind_keys = sorted({k for kind in kinds().values() for k in kind.params})
    allowed = ("kind", *kind_keys, *MIXER_PARAMS)
    params: dict[str, Value] = {}
    for key in body:
        if key == "kind":
            continue
        if key not in allowed:
            raise unknown_key(key, path, allowed)
        params[key] = _parse_mixer_param(key, body[key], path, kind, options)
    spec = MixerSpec(path, kind, params)
    _check_mixer_conditions(spec, options)
    return spec


def _parse_mixer_param(key: str, raw: Any, path: str, kind: Value, options: list[tuple[Kind, ...]]) -> Value:
    """One kind or mixer parameter of ``path``, checked against the rule its kind declares."""
    value = parse_value(raw, f"{path}.{key}")
    if key in MIXER_PARAMS:
        param = MIXER_PARAMS[key].param
    else:
        takers = [k for k in kinds().values() if key in k.params]
        if not any(key in k.params for option in options for k in option):
            names = [o if isinstance(o, str) else str(o) for o in _kind_names(kind)]
            raise SpaceError(
                f"{path}.{key}: only exists where the kind is {' or '.join(k.name for k in takers)}, "
                f"and this mixer's kind is {' or '.join(names)}; "
                f"allowed: remove {key} or choose such a kind"
            )
        param = takers[0].params[key]
    if isinstance(value, FloatRange) and param.rule.type != "float":
        raise SpaceError(f"{path}.{key}: a float range is not allowed; allowed: {param.allowed}")
    for v in candidates(value):
        if not param.ok(v):
            raise SpaceError(f"{path}.{key}: {show(v)} is not allowed; allowed: {param.allowed}")
    return value


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
