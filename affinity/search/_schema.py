"""What a validated search space is: the ``Space`` and its stage and mixer specs.

Every field is a leaf (a fixed value or a searched ``Param``), a ``Ref`` into a model-level
list choice, or a ``Named`` model-level leaf every stage shares. Parsing builds these
(``_parse``), sampling reads them (``_sampling``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from affinity.search.kinds import Kind, parse_kind
from affinity.search.params import Choice, Value
from affinity.search.settings import Settings

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
#: the per-stage fields that are one leaf each (the others are mixers)
STAGE_LEAVES = ("dim", "depth", "patch_size", "channel_mlp_ratio")


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
    """One stage: each field a leaf, a ``Ref`` into a list choice, or a ``Named`` shared leaf."""

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
class Named:
    """A model-level leaf shared by every stage, sampled once under its model-level name."""

    name: str
    value: Any


def leaf_name(prefix: str, key: str, value: Any) -> str:
    """Optuna name of a stage leaf: model-level leaves keep their model-level name."""
    if isinstance(value, Named):
        return value.name
    return f"{prefix}.{key}"


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

    def sample(self, trial: Any, img_size: int | None = None) -> Any:
        """Sample ``trial`` (Optuna, define-by-run) into a ``ModelCfg``.

        Parameters are named by key path; a mixer's parameters are sampled only where the
        chosen kind takes them, ``alpha``/``beta`` only where the coefficients use them.
        """
        from affinity.search._sampling import sample

        return sample(self, trial, img_size)

    def distributions(self) -> dict[str, list[Any] | None]:
        """Every parameter name the space can sample, with its values (None: continuous)."""
        from affinity.search._sampling import distributions

        return distributions(self)

    def searched(self) -> list[str]:
        """Names of the searched parameters, in the order they appear."""
        return list(self.distributions())
