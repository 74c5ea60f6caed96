"""Sampling a ``Space`` with an Optuna trial (define-by-run) into a ``ModelCfg``, and the
names and values of everything it can sample (for the grid sampler and reports)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from affinity.search._schema import STAGE_LEAVES, MixerSpec, Named, Ref, leaf_name
from affinity.search.kinds import Geometry, Kind, build_mixer, parse_kind, takes_connection
from affinity.search.params import Choice, Param, grid_values, is_param, suggest

if TYPE_CHECKING:
    from affinity.search._schema import Space


def sample(space: Space, trial: Any, img_size: int | None = None) -> Any:
    """``Space.sample``: ``trial``'s choices as a ``ModelCfg`` at ``img_size``."""
    from affinity.models.config import ModelCfg, StageCfg

    img = img_size or space.settings.img_size
    sampled: dict[str, Any] = {}

    def leaf(name: str, value: Any) -> Any:
        if isinstance(value, Ref):
            if value.path not in sampled:
                sampled[value.path] = suggest(trial, value.path, space.lists[value.path])
            return sampled[value.path][value.index]
        if isinstance(value, Named):
            name, value = value.name, value.value
        if name not in sampled:
            sampled[name] = suggest(trial, name, value)
        return sampled[name]

    fields = {k: leaf(f"model.{k}", v) for k, v in space.model_fields.items()}
    mixers: dict[str, tuple[tuple[Kind, ...], dict[str, Any]]] = {}
    stages = []
    stride = 1
    for st in space.stages:
        prefix = f"model.stages[{st.index}]"
        dim, depth, patch, ratio = (
            leaf(leaf_name(prefix, k, getattr(st, k)), getattr(st, k)) for k in STAGE_LEAVES
        )
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
        stages.append(StageCfg(dim=dim, depth=depth, patch_size=patch, channel_mlp_ratio=ratio, **stage_kw))
    return ModelCfg(family=space.family, stages=tuple(stages), **fields)


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


def distributions(space: Space) -> dict[str, list[Any] | None]:
    """``Space.distributions``: every parameter name with its values (None: continuous)."""
    return {name: grid_values(value) for name, value in parameters(space).items()}


def parameters(space: Space) -> dict[str, Param]:
    """Every searched leaf of the space under the name Optuna samples it by."""
    out: dict[str, Param] = {}
    for k, v in space.model_fields.items():
        if is_param(v):
            out[f"model.{k}"] = v
    out.update(space.lists)
    seen: set[str] = set()
    for st in space.stages:
        prefix = f"model.stages[{st.index}]"
        for key in STAGE_LEAVES:
            value = getattr(st, key)
            name = leaf_name(prefix, key, value)
            if isinstance(value, Named):
                value = value.value
            if is_param(value):
                out[name] = value
        for spec in (st.mixer, st.pos_mixer):
            if spec is None or spec.path in seen:
                continue
            seen.add(spec.path)
            if isinstance(spec.kind, Choice):
                out[f"{spec.path}.kind"] = spec.kind
            for key, value in spec.params.items():
                if is_param(value):
                    out[f"{spec.path}.{key}"] = value
    return out
