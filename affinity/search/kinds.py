"""The mixer kinds a search space chooses among, and how each becomes a ``MixerCfg``.

A kind is one affinity in the mixer layout its paper uses (``axial_shift`` is AS-MLP's
mixer, ``spatial_shift`` S2-MLP's, ``dwconv`` Container's static stage, ...), or a
combination ``a+b`` of combinable kinds: their branches side by side in one context
aggregation, ``Y = (Σ_b c_b·A_b(V))·W`` with ``c_b = α`` for dynamic branches and ``β`` for
static ones (``attention+dwconv`` is Container-light's last stage).

Each kind declares its parameters with the values they allow; a parameter of the space is
sampled only when the chosen kind takes it (shift parameters exist only where a shift is
chosen). The mixer-level parameters (``connection``, ``coefficients``, ``alpha``,
``beta``) have conditions too, written in ``MIXER_PARAMS``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from affinity.errors import SpaceError, closest, is_int
from affinity.ops.config import COEFFICIENTS, CONNECTIONS, BranchCfg, MixerCfg

__all__ = ["KINDS", "MIXER_PARAMS", "Kind", "ParamRule", "build_mixer", "parse_kind"]

PADDINGS = ("zero", "circular", "reflect", "replicate")


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


@dataclass(frozen=True)
class ParamRule:
    """What one parameter allows: a predicate, its wording, and the value used when unset."""

    ok: Callable[[Any], bool]
    allowed: str
    default: Any = None


ODD = ParamRule(lambda v: is_int(v, 1) and v % 2 == 1, "an odd integer >= 1")
POSITIVE = ParamRule(lambda v: is_int(v, 1), "an integer >= 1")
PADDING = ParamRule(lambda v: v in PADDINGS, f"one of {', '.join(PADDINGS)}")
BOOL = ParamRule(lambda v: isinstance(v, bool), "true or false")


@dataclass(frozen=True)
class Geometry:
    """Where a mixer sits: its stage's channels and map size."""

    dim: int
    hw: tuple[int, int]

    @property
    def tokens(self) -> int:
        return self.hw[0] * self.hw[1]


@dataclass(frozen=True)
class Kind:
    """One base mixer kind.

    Args:
        name: the name used in space files.
        summary: one line for the README and messages.
        params: its own parameters (passed to its affinities), with their rules.
        dynamic: its affinity depends on the input (attention).
        preset: ``(params, geometry) -> MixerCfg``, the published mixer (the model zoo's
            preset in ``affinity.models.mixers``) with these parameters.
        branches: how many branches its mixer has.
        combinable: may appear in an ``a+b`` combination (its branches are parallel).
    """

    name: str
    summary: str
    params: dict[str, ParamRule]
    dynamic: bool
    preset: Callable[[dict[str, Any], Geometry], MixerCfg]
    branches: int = 1
    combinable: bool = True


def _presets() -> Any:
    from affinity.models import mixers

    return mixers


KINDS: dict[str, Kind] = {
    k.name: k
    for k in (
        Kind(
            "axial_shift",
            "AS-MLP: shift along W and along H, each with a 1x1 projection and GELU",
            {
                "shift_size": ParamRule(ODD.ok, ODD.allowed, 5),
                "dilation": ParamRule(POSITIVE.ok, POSITIVE.allowed, 1),
                "padding": ParamRule(PADDING.ok, PADDING.allowed, "zero"),
            },
            dynamic=False,
            preset=lambda p, g: _presets().as_mlp_mixer(**p),
            branches=2,
        ),
        Kind(
            "spatial_shift",
            "S2-MLP: four channel groups shifted ±1 along W and H (borders replicate)",
            {},
            dynamic=False,
            preset=lambda p, g: _presets().s2mlp_mixer(),
        ),
        Kind(
            "dwconv",
            "depthwise convolution (Container's static affinity)",
            {
                "kernel_size": ParamRule(ODD.ok, ODD.allowed, 5),
                "dilation": ParamRule(POSITIVE.ok, POSITIVE.allowed, 1),
                "padding": ParamRule(PADDING.ok, PADDING.allowed, "zero"),
            },
            dynamic=False,
            preset=lambda p, g: _presets().dwconv_mixer(**p),
        ),
        Kind(
            "attention",
            "multi-head self-attention, global or in windows (dynamic)",
            {
                "heads": ParamRule(POSITIVE.ok, "an integer >= 1 dividing the stage's dim", 1),
                "window": ParamRule(
                    lambda v: v is None or is_int(v, 1), "null (global) or an integer >= 1", None
                ),
                "qkv_bias": ParamRule(BOOL.ok, BOOL.allowed, True),
                "rel_pos_bias": ParamRule(BOOL.ok, BOOL.allowed + " (used with a window only)", False),
            },
            dynamic=True,
            preset=lambda p, g: _presets().attention_mixer(
                heads=p["heads"],
                qkv_bias=p["qkv_bias"],
                window=p["window"],
                # Swin's relative position bias lives inside a window; global attention has none
                rel_pos_bias=p["rel_pos_bias"] and p["window"] is not None,
            ),
        ),
        Kind(
            "token_mlp",
            "ResMLP: one learned dense token matrix Linear(N, N)",
            {},
            dynamic=False,
            preset=lambda p, g: _presets().resmlp_mixer(),
        ),
        Kind(
            "mixer_mlp",
            "MLP-Mixer: two token layers N -> ratio·N -> N with a GELU between (serial)",
            {"token_mlp_ratio": ParamRule(lambda v: _is_num(v) and v > 0, "a number > 0", 0.5)},
            dynamic=False,
            preset=lambda p, g: _presets().mixer_token_mlp(
                hidden=max(1, round(p["token_mlp_ratio"] * g.tokens))
            ),
            branches=2,
            combinable=False,
        ),
        Kind(
            "identity",
            "identity: passes V through (a baseline without token mixing)",
            {},
            dynamic=False,
            preset=lambda p, g: MixerCfg(branches=(BranchCfg("identity"),), proj_in=False, proj_out=False),
        ),
    )
}


@dataclass(frozen=True)
class MixerParam:
    """A mixer-level parameter with the condition under which it is sampled."""

    rule: ParamRule
    #: what the condition is, for messages
    condition: str


MIXER_PARAMS: dict[str, MixerParam] = {
    "connection": MixerParam(
        ParamRule(lambda v: v in CONNECTIONS, f"one of {', '.join(CONNECTIONS)}", "parallel"),
        "a kind with two or more branches (axial_shift or a combination a+b)",
    ),
    "coefficients": MixerParam(
        ParamRule(lambda v: v in COEFFICIENTS, f"one of {', '.join(COEFFICIENTS)}", "sum"),
        "a parallel mixer",
    ),
    "alpha": MixerParam(
        ParamRule(_is_num, "a number", 1.0),
        "coefficients fixed or learnable and a dynamic branch (attention)",
    ),
    "beta": MixerParam(
        ParamRule(_is_num, "a number", 1.0),
        "coefficients fixed or learnable and a static branch",
    ),
}


def parse_kind(name: Any, path: str) -> tuple[Kind, ...]:
    """``'attention+dwconv'`` -> its base kinds; a SpaceError naming ``path`` otherwise."""
    combinable = ", ".join(n for n, k in KINDS.items() if k.combinable)
    allowed = f"one of {', '.join(KINDS)}, or a combination a+b of {combinable}"
    if not isinstance(name, str) or not name.strip():
        raise SpaceError(f"{path}: {name!r} is not a mixer kind; allowed: {allowed}")
    parts = [p.strip() for p in name.split("+")]
    kinds = []
    for part in parts:
        if part not in KINDS:
            near = closest(part, KINDS)
            hint = f" (did you mean {', '.join(near)}?)" if near else ""
            raise SpaceError(f"{path}: {part!r} is not a known affinity kind{hint}; allowed: {allowed}")
        kinds.append(KINDS[part])
    if len(parts) > 1:
        if len(set(parts)) != len(parts):
            raise SpaceError(f"{path}: {name!r} repeats a kind; allowed: distinct kinds joined by +")
        for k in kinds:
            if not k.combinable:
                raise SpaceError(
                    f"{path}: {name!r} combines {k.name}, which is serial on its own; allowed: {allowed}"
                )
    return tuple(kinds)


def n_branches(kinds: tuple[Kind, ...]) -> int:
    """Branches the kinds make (AS-MLP's shift has two)."""
    return sum(k.branches for k in kinds)


def takes_connection(kinds: tuple[Kind, ...]) -> bool:
    return n_branches(kinds) >= 2 and not any(k.name == "mixer_mlp" for k in kinds)


def build_mixer(kinds: tuple[Kind, ...], values: dict[str, Any], geometry: Geometry) -> MixerCfg:
    """The ``MixerCfg`` for the chosen kinds and sampled values (defaults fill the rest).

    One kind is its published mixer (the zoo's preset) with these parameters; a combination
    puts every kind's branches side by side between one input and one output projection.

    Args:
        kinds: the base kinds (one, or several for a combination).
        values: sampled or fixed values of the kind and mixer parameters.
        geometry: the stage's dim and map size (a token MLP's size depends on it).
    """
    presets = [
        kind.preset({k: values.get(k, rule.default) for k, rule in kind.params.items()}, geometry)
        for kind in kinds
    ]
    mixer_values = {k: values[k] for k in MIXER_PARAMS if k in values}
    if len(presets) == 1:
        return dataclasses.replace(presets[0], **mixer_values)
    branches = tuple(b for p in presets for b in p.branches)
    defaults = {k: p.rule.default for k, p in MIXER_PARAMS.items()}
    return MixerCfg(branches=branches, proj_in=True, proj_out=True, **{**defaults, **mixer_values})
