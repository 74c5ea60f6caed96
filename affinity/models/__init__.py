"""Published backbones rebuilt from affinities: configs, the model table, ``create_model``.

>>> from affinity.models import create_model, list_models
>>> model = create_model("as_mlp_t", num_classes=10, img_size=32, in_chans=1, depths=(1, 1, 1, 1))
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from affinity.errors import ConfigError, UnknownNameError, closest
from affinity.models.config import (
    ModelCfg,
    StageCfg,
    apply_overrides,
    check_model,
    load_model_config,
    save_model_config,
)
from affinity.models.network import AffinityNet, Block, Stage
from affinity.models.zoo import MODELS, ModelEntry, Reference


def list_models(pattern: str | None = None) -> list[str]:
    """Registered model names, sorted, optionally filtered by a shell pattern (``as_mlp*``)."""
    return MODELS.names(pattern)


def get_entry(name: str) -> ModelEntry:
    """The registry entry of ``name`` (config and references); UnknownNameError lists the closest."""
    if name not in MODELS:
        near = closest(name, MODELS.names())
        hint = f"; closest: {', '.join(near)}" if near else ""
        raise UnknownNameError(f"unknown model {name!r}{hint} (`affinity models` lists all {len(MODELS)})")
    return MODELS.get(name)


def get_reference(name: str, img_size: int | None = None) -> Reference | None:
    """The published reference of a registered model (at ``img_size`` when given).

    Args:
        name: a registered model name.
        img_size: the input size; None gives the main (224) reference.
    """
    entry = get_entry(name)
    return entry.reference if img_size is None else entry.reference_at(img_size)


def _looks_like_path(spec: str) -> bool:
    return spec.endswith((".yaml", ".yml")) or "/" in spec or Path(spec).is_file()


def resolve_model_config(spec: str) -> ModelCfg:
    """A registered name or a model-config YAML path -> ``ModelCfg``.

    Raises:
        UnknownNameError: an unknown name (the message lists the closest registered names).
        ConfigError: a YAML file that is missing or invalid.
    """
    if not isinstance(spec, str) or not spec:
        raise ConfigError(f"model={spec!r} is not allowed: a registered name or a YAML path")
    if spec in MODELS:
        return MODELS.get(spec).cfg
    if _looks_like_path(spec):
        return load_model_config(spec)
    return get_entry(spec).cfg  # raises UnknownNameError with the closest names


def create_model(
    name_or_cfg: str | ModelCfg,
    *,
    num_classes: int = 1000,
    img_size: int = 224,
    in_chans: int = 3,
    **overrides: Any,
) -> AffinityNet:
    """Build a model from a registered name, a YAML path or a ``ModelCfg`` (timm-like).

    Args:
        name_or_cfg: a name from ``list_models()``, a model-config YAML path, or a config.
        num_classes: classifier outputs (0: features only).
        img_size: input side; must suit the model (divisible by its total stride; windowed
            attention must tile every stage map).
        in_chans: input channels.
        **overrides: architecture fields to change (``depths=(1, 1, 1, 1)``,
            ``shift_size=7``, ``heads=4``, ``channel_mlp_ratio=2``, ...; see
            ``affinity.models.config.apply_overrides``).

    Raises:
        UnknownNameError: unknown model name.
        ConfigError: an unknown or invalid field, or an input size the model cannot take.
    """
    if isinstance(name_or_cfg, ModelCfg):
        cfg = name_or_cfg
        check_model(cfg)
    else:
        cfg = resolve_model_config(name_or_cfg)
    cfg = apply_overrides(cfg, **overrides)
    model = AffinityNet(cfg, num_classes=num_classes, img_size=img_size, in_chans=in_chans)
    model.name = name_or_cfg if isinstance(name_or_cfg, str) else "custom"
    return model


__all__ = [
    "MODELS",
    "AffinityNet",
    "Block",
    "ModelCfg",
    "Reference",
    "Stage",
    "StageCfg",
    "create_model",
    "get_entry",
    "get_reference",
    "list_models",
    "load_model_config",
    "resolve_model_config",
    "save_model_config",
]
