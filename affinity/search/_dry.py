"""Whole-space checks, run before any trial: the stages' geometry, a dry construction of
every mixer each stage can take, and every model-level field's values."""

from __future__ import annotations

import itertools
import json
import re
from typing import Any

from affinity.errors import AffinityError, ConfigError, SpaceError, is_int
from affinity.search._messages import show
from affinity.search._schema import MixerSpec, Named, Ref, Space
from affinity.search.kinds import Geometry, Kind, build_mixer, takes_connection
from affinity.search.params import Choice, candidates, is_param
from affinity.search.settings import is_positive

#: Past this many combinations a stage's dry check samples ends and middles only.
DRY_CHECK_LIMIT = 400


def _values(value: Any, lists: dict[str, Choice]) -> list[Any]:
    if isinstance(value, Ref):
        return sorted({option[value.index] for option in lists[value.path].values})
    if isinstance(value, Named):
        return candidates(value.value)
    return candidates(value)


def _where(value: Any, default: str) -> str:
    if isinstance(value, Ref):
        return value.path
    if isinstance(value, Named):
        return value.name
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
                raise SpaceError(f"{patch_where}: {show(v)} is not allowed; allowed: an integer >= 1")
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
                    where = _where(value, f"{path}.{key}")
                    raise SpaceError(f"{where}: {show(v)} is not allowed; allowed: an integer >= 1")
        ratio = st.channel_mlp_ratio
        for v in _values(ratio, space.lists):
            if not is_positive(v):
                raise SpaceError(
                    f"{_where(ratio, f'{path}.channel_mlp_ratio')}: {show(v)} is not allowed; "
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


def _try_build(option: tuple[Kind, ...], values: dict[str, Any], dim: int, size: int) -> str | None:
    """Build the mixer's affinities at one width and map size; the error message, or None."""
    from affinity.ops import create_affinity

    try:
        mixer = build_mixer(option, values, Geometry(dim, (size, size)))
        for branch in mixer.branches:  # an undeclared parameter is a ConfigError naming it
            create_affinity(branch.affinity, dim=dim, hw=(size, size), **dict(branch.params))
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
            # as sampling does: connection only for kinds that take it
            if key in spec.params and (key != "connection" or takes_connection(option)):
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
            m = re.search(r": (\w+)=", last_error)  # the key a ConfigError names, as the space names it
            found = m.group(1) if m else None
            if found is not None and found in spec.params:
                key = found
                shown = f"{show(spec.params[key])} " if not is_param(spec.params[key]) else ""
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
            except (ConfigError, TypeError) as exc:
                raise SpaceError(f"model.{key}: {show(v)} is not allowed: {exc}") from None
