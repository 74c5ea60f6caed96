"""Search-space files: YAML -> a validated ``Space`` -> Optuna samples -> ``ModelCfg``.

The whole file is checked before any trial runs: unknown keys, wrong types, empty choices,
inverted ranges, unknown affinities, parameters whose condition can never hold, and a dry
construction of every mixer each stage can take (heads that do not divide a stage's width,
a reflect padding wider than the map, ...). Every error is a ``SpaceError`` whose message
starts with the key path (``model.stages[2].mixer.shift_size``), then the value and what is
allowed. The format is documented in README.md, "The search space file".

This module is the public face; the work is done in private modules, one job each:
``settings`` (public: data, budget, study), ``_schema`` (the dataclasses), ``_parse``
(YAML -> ``Space``), ``_sampling`` (Optuna trial -> ``ModelCfg``), ``_dry`` (whole-space
checks), ``_files`` (finding and reading a file).
"""

from __future__ import annotations

from typing import Any

from affinity.search._dry import check_space
from affinity.search._files import load_space, resolve_space_path
from affinity.search._parse import parse_space
from affinity.search._schema import MixerSpec, Space, StageSpec
from affinity.search.settings import BUDGET_KEYS, Settings, check_setting, with_overrides

__all__ = [
    "BUDGET_KEYS",
    "MixerSpec",
    "Settings",
    "Space",
    "StageSpec",
    "check_setting",
    "check_space",
    "config_hash",
    "load_space",
    "parse_space",
    "resolve_space_path",
    "with_overrides",
]


def config_hash(cfg: Any) -> str:
    """12 hex digits identifying what a model configuration computes: the fingerprint of its
    canonical form (``ModelCfg.canonical``), so configurations that differ only in inert
    parameters (an axial shift of size 1's dilation) share it and the search trains one."""
    from affinity.models.config import ModelCfg

    return (cfg if isinstance(cfg, ModelCfg) else ModelCfg.from_dict(cfg)).canonical().fingerprint()
