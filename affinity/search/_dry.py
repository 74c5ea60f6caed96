"""Whole-space checks, run before any trial: the stages' geometry, a dry construction of
every mixer each stage can take, every model-level field's values, and how many distinct
configurations the space holds (``census``)."""

from __future__ import annotations

import itertools
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

from affinity.errors import AffinityError, ConfigError, SpaceError, is_int
from affinity.search._messages import show
from affinity.search._schema import MixerSpec, Named, Ref, Space
from affinity.search.kinds import Geometry, Kind, build_mixer, takes_connection
from affinity.search.params import GRID_LIMIT, Choice, FloatRange, IntRange, candidates, is_param
from affinity.search.settings import is_positive

#: Past this many combinations a stage's dry check samples ends and middles only.
DRY_CHECK_LIMIT = 400
#: Past this many parameter sets a census stops: the space is "not counted".
CENSUS_LIMIT = 20_000


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


@dataclass
class Census:
    """What a space holds, found by walking its define-by-run tree: every parameter set a
    trial can hold (a mixer's parameters only where its kind takes them), each sampled once.

    Attributes:
        combinations: the product of every parameter's number of choices, as a grid over
            all of them counts (None with a continuous parameter).
        points: parameter sets a trial can hold (None: more than ``CENSUS_LIMIT``, not counted).
        refused: of those, the ones the models refuse (the search records them as rejected).
        before: distinct model configurations before canonicalisation (``ModelCfg.fingerprint``).
        configs: distinct configurations after it: canonical ``config_hash`` -> (the first
            parameters that give it, as Optuna stores them; its ``ModelCfg``).
        continuous: parameters searched as a continuum (``Space.distributions``' None), walked
            at their ends and middle (``candidates``): the space holds unboundedly many.
    """

    combinations: int | None
    points: int | None
    refused: int = 0
    before: int = 0
    configs: dict[str, tuple[dict[str, Any], Any]] = field(default_factory=dict)
    continuous: list[str] = field(default_factory=list)

    def line(self) -> str:
        """One line for ``search --check``."""
        unbounded = f"unbounded ({', '.join(self.continuous)} continuous); " if self.continuous else ""
        if self.points is None:
            return f"configurations: {unbounded}not counted (more than {CENSUS_LIMIT} parameter sets)"
        grid = f"; {self.combinations} combinations of the parameters' choices" if self.combinations else ""
        counted = (
            f"{len(self.configs)} distinct after canonicalisation, {self.before} before "
            f"({self.points} parameter sets a trial can hold, {self.refused} refused by the models{grid})"
        )
        at_ends = "with each at its ends and middle: " if self.continuous else ""
        return f"configurations: {unbounded}{at_ends}{counted}"


class _Walk:
    """An Optuna-trial stand-in that walks a space's define-by-run tree depth first: each
    suggestion takes the value at its position on the current path, ``advance`` moves the
    path to the next leaf (an odometer whose digits appear as the choices made ask for them)."""

    def __init__(self) -> None:
        self.path: list[int] = []
        self.sizes: list[int] = []
        self.depth = 0
        self.params: dict[str, Any] = {}

    def _pick(self, name: str, values: list[Any]) -> Any:
        if self.depth == len(self.path):
            self.path.append(0)
            self.sizes.append(len(values))
        self.params[name] = value = values[self.path[self.depth]]
        self.depth += 1
        return value

    def suggest_categorical(self, name: str, choices: Any) -> Any:
        return self._pick(name, list(choices))

    def suggest_int(self, name: str, low: int, high: int, *, step: int = 1, log: bool = False) -> int:
        ints = IntRange(low, high, step)
        # a range too long to list is a continuum (``Space.distributions``): ends and middle
        return int(self._pick(name, ints.values() if ints.count() <= GRID_LIMIT else candidates(ints)))

    def suggest_float(
        self, name: str, low: float, high: float, *, step: float | None = None, log: bool = False
    ) -> float:
        if step is None:
            return float(self._pick(name, candidates(FloatRange(low, high))))
        n = math.floor((high - low) / step + 1e-9) + 1
        return float(self._pick(name, [low + k * step for k in range(n)]))

    def advance(self) -> bool:
        """Move to the next leaf; False when the tree is walked. The choices past where the
        last sample stopped (a refused configuration stops early) are not on the path."""
        del self.path[self.depth :], self.sizes[self.depth :]
        self.depth, self.params = 0, {}
        while self.path:
            self.path[-1] += 1
            if self.path[-1] < self.sizes[-1]:
                return True
            self.path.pop()
            self.sizes.pop()
        return False


def census(space: Space, img_size: int | None = None, *, stop_at: int | None = None) -> Census:
    """Count what ``space`` holds (see ``Census``), sampling every parameter set once.

    Args:
        space: the validated space.
        img_size: the image side the models are built for (default the space's).
        stop_at: stop once this many distinct configurations are found (the count is then
            "at least"); None walks the whole tree.
    """
    from affinity.search.space import config_hash

    grid = space.distributions()
    continuous = [name for name, values in grid.items() if values is None]
    combinations = None if continuous else math.prod(len(v or ()) for v in grid.values())
    result = Census(combinations, 0, continuous=continuous)
    before: set[str] = set()
    walk = _Walk()
    points = 0
    while True:
        points += 1
        if points > CENSUS_LIMIT:
            return Census(combinations, None, continuous=continuous)
        try:
            cfg = space.sample(walk, img_size=img_size)
        except AffinityError:
            result.refused += 1
        else:
            before.add(cfg.fingerprint())
            result.configs.setdefault(config_hash(cfg), (dict(walk.params), cfg))
        if not walk.advance() or (stop_at is not None and len(result.configs) >= stop_at):
            break
    result.points, result.before = points, len(before)
    return result
