"""Model-config overrides: ``apply_overrides(cfg, shift_size=7, dims=[...])``, the engine
behind ``create_model(name, **overrides)`` and ``--set KEY=VALUE``. Public through
``affinity.models.config``."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from affinity.errors import ConfigError
from affinity.models._schema import ModelCfg, affinity_params, check_model, mixer_from_dict
from affinity.ops.config import MixerCfg

_STAGE_FIELDS = ("dim", "depth", "patch_size", "channel_mlp_ratio", "mixer", "pos_mixer", "alt_mixer")
_STAGE_ALIASES = {
    "dims": "dim",
    "depths": "depth",
    "patch_sizes": "patch_size",
    "channel_mlp_ratios": "channel_mlp_ratio",
}
_MIXER_FIELDS = tuple(f.name for f in dataclasses.fields(MixerCfg) if f.name != "branches")


def apply_overrides(cfg: ModelCfg, **overrides: Any) -> ModelCfg:
    """A copy of ``cfg`` with architecture fields changed, validated.

    A key is, in order: a ``ModelCfg`` field (``norm``, ``drop_path_rate``, ...); a stage
    field (``dim``/``dims``, ``depth``/``depths``, ``patch_size``, ``channel_mlp_ratio``,
    ``mixer``), one value for every stage or a list with one per stage; a ``MixerCfg`` field
    (``connection``, ``coefficients``, ``alpha``, ...) for every stage's mixer; or a branch
    parameter (``shift_size``, ``heads``, ``window_size``, ``kernel_size``, ...; each
    affinity's ``params`` declare them) set on every branch whose affinity declares it,
    again one value or one per stage. Where a stage's ``mixer`` and ``alt_mixer`` differ on
    that parameter (Swin's shift in every second block), the override changes ``alt_mixer``
    only. Overriding ``mixer`` drops ``alt_mixer`` unless it is overridden too.

    Args:
        cfg: the base configuration.
        **overrides: the fields to change.

    Raises:
        ConfigError: naming the field when it is unknown or its value is not allowed.
    """
    if not overrides:
        return cfg
    top = {f.name for f in dataclasses.fields(ModelCfg)} - {"stages"}
    model_kw: dict[str, Any] = {}
    stages = list(cfg.stages)
    n = len(stages)
    for key, value in overrides.items():
        if key in top:
            model_kw[key] = value
            continue
        fname = _STAGE_ALIASES.get(key, key)
        if fname in _STAGE_FIELDS:
            values = _per_stage(key, value, n, seq_ok=False)
            new = []
            for s, v in zip(stages, values):
                if fname in ("mixer", "pos_mixer", "alt_mixer") and isinstance(v, Mapping):
                    v = mixer_from_dict(v, key)
                extra = {"alt_mixer": None} if fname == "mixer" and "alt_mixer" not in overrides else {}
                new.append(_replace(s, key, **{fname: v}, **extra))
            stages = new
            continue
        if key in _MIXER_FIELDS:
            values = _per_stage(key, value, n, seq_ok=False)
            stages = [
                _replace(s, key, mixer=_replace(s.mixer, key, **{key: v}))
                if s.alt_mixer is None
                else _replace(
                    s,
                    key,
                    mixer=_replace(s.mixer, key, **{key: v}),
                    alt_mixer=_replace(s.alt_mixer, key, **{key: v}),
                )
                for s, v in zip(stages, values)
            ]
            continue
        values = _per_stage(key, value, n, seq_ok=True)
        hit = False
        new = []
        for s, v in zip(stages, values):
            changes = {}
            for name, m in s.mixers().items():
                if name == "mixer" and s.alt_mixer is not None and _differs(s.mixer, s.alt_mixer, key):
                    continue  # the alternation itself (Swin's shift): the override sets alt_mixer
                m2, changed = _set_branch_param(m, key, v)
                if changed:
                    changes[name] = m2
            hit = hit or bool(changes)
            new.append(_replace(s, key, **changes) if changes else s)
        if not hit:
            allowed = sorted(
                top | set(_STAGE_FIELDS) | set(_STAGE_ALIASES) | set(_MIXER_FIELDS) | _branch_keys(cfg)
            )
            raise ConfigError(
                f"override {key}={value!r} is not a known architecture field: allowed {allowed}"
            )
        stages = new
    try:
        out = dataclasses.replace(cfg, stages=tuple(stages), **model_kw)
    except ConfigError as exc:
        raise ConfigError(f"override {exc}") from None
    check_model(out)
    return out


def _branch_keys(cfg: ModelCfg) -> set[str]:
    keys: set[str] = set()
    for s in cfg.stages:
        for m in s.mixers().values():
            for b in m.branches:
                keys |= affinity_params(b.affinity)
    return keys


def _differs(a: MixerCfg, b: MixerCfg, key: str) -> bool:
    """Whether two mixers give the branch parameter ``key`` different values."""
    va = [br.params.get(key) for br in a.branches]
    vb = [br.params.get(key) for br in b.branches]
    return va != vb


def _set_branch_param(mixer: MixerCfg, key: str, value: Any) -> tuple[MixerCfg, bool]:
    branches = []
    changed = False
    for b in mixer.branches:
        if key in affinity_params(b.affinity):
            b = dataclasses.replace(b, params={**b.params, key: value})
            changed = True
        branches.append(b)
    return (dataclasses.replace(mixer, branches=tuple(branches)) if changed else mixer), changed


def _per_stage(key: str, value: Any, n: int, *, seq_ok: bool) -> list[Any]:
    """One value per stage: a list of length n is per stage, anything else is broadcast."""
    if isinstance(value, (list, tuple)) and not isinstance(value, MixerCfg):
        if len(value) == n:
            return list(value)
        if not seq_ok:
            raise ConfigError(
                f"override {key}={value!r} is not allowed: one value or a list of {n} (one per stage)"
            )
    return [value] * n


def _replace(obj: Any, key: str, **changes: Any) -> Any:
    try:
        return dataclasses.replace(obj, **changes)
    except ConfigError as exc:
        raise ConfigError(f"override {key}: {exc}") from None
    except TypeError as exc:
        raise ConfigError(f"override {key}: {exc}") from None
