"""Architectures as data: frozen ``StageCfg`` / ``ModelCfg``, their YAML form and overrides.

A ``ModelCfg`` holds the architecture only; ``num_classes``, ``img_size`` and ``in_chans`` are
build arguments of ``create_model``. Every token mixer is a ``MixerCfg`` (affinity.ops.config),
so a registered model, a YAML file and a search trial all describe a network the same way.

YAML form (what ``save_model_config`` writes)::

    model:
      family: hierarchical
      norm: groupnorm
      stages:
        - {dim: 96, depth: 2, patch_size: 4, channel_mlp_ratio: 4.0, mixer: {branches: [...]}}
        ...

This module is the public face; the work is in private modules, one job each:
``_schema`` (the dataclasses and their checks), ``_overrides`` (``apply_overrides``),
``_yaml`` (reading and writing the YAML form).
"""

from __future__ import annotations

from affinity.models._overrides import apply_overrides
from affinity.models._schema import (
    ACTS,
    BLOCKS,
    DOWNSAMPLES,
    FAMILIES,
    GATES,
    NORMS,
    POOLS,
    STEMS,
    ModelCfg,
    StageCfg,
    affinity_params,
    check_mixer,
    check_model,
)
from affinity.models._yaml import load_model_config, save_model_config

__all__ = [
    "ACTS",
    "BLOCKS",
    "DOWNSAMPLES",
    "FAMILIES",
    "GATES",
    "NORMS",
    "POOLS",
    "STEMS",
    "ModelCfg",
    "StageCfg",
    "affinity_params",
    "apply_overrides",
    "check_mixer",
    "check_model",
    "load_model_config",
    "save_model_config",
]
