"""The mixer kinds a search space chooses among, and how each becomes a ``MixerCfg``.

A kind is one affinity in the mixer layout its paper uses (``axial_shift`` is AS-MLP's
mixer, ``spatial_shift`` S2-MLP's, ``dwconv`` Container's static stage, ...), or a
combination ``a+b`` of combinable kinds: their branches side by side in one context
aggregation, ``Y = (Σ_b c_b·A_b(V))·W`` with ``c_b = α`` for dynamic branches and ``β`` for
static ones (``attention+dwconv`` is Container-light's last stage).

Every registered affinity is a kind of its own name. Its parameters are the ones its class
declares (``Affinity.params``, those with ``search=True``): the same names, rules, defaults
and meanings as the constructor, ``affinity affinities`` and model-config overrides. Most
kinds are one branch inside the ``layout`` the affinity declares; ``PUBLISHED`` lists the
kinds whose paper's mixer is more than that (AS-MLP's two axial branches, MLP-Mixer's two
token layers, Swin's window-only bias) and the zoo preset that builds each. A parameter of
the space is sampled only when the chosen kind takes it; the mixer-level parameters
(``connection``, ``coefficients``, ``alpha``, ``beta``) have conditions, in ``MIXER_PARAMS``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from affinity.errors import SpaceError, closest
from affinity.ops.config import COEFFICIENTS, CONNECTIONS, BranchCfg, MixerCfg
from affinity.ops.params import NUMBER, POSITIVE_NUMBER, Param, one_of

__all__ = ["MIXER_PARAMS", "Geometry", "Kind", "build_mixer", "kinds", "parse_kind"]


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
        params: its parameters by name (the affinity's declarations, or the kind's own).
        dynamic: its affinity depends on the input (attention).
        preset: ``(params, geometry) -> MixerCfg``, the published mixer with these parameters.
        branches: how many branches its mixer has.
        combinable: may appear in an ``a+b`` combination (its branches are parallel).
    """

    name: str
    summary: str
    params: Mapping[str, Param]
    dynamic: bool
    preset: Callable[[dict[str, Any], Geometry], MixerCfg]
    branches: int = 1
    combinable: bool = True


@dataclass(frozen=True)
class Published:
    """A kind whose paper's mixer is not one branch inside its affinity's ``layout``.

    Args:
        summary: one line for the README and messages.
        params: the affinity's declared parameters the kind takes, by name.
        preset: ``(params, geometry) -> MixerCfg`` (a zoo preset of ``affinity.models.mixers``).
        defaults: the published mixer's defaults where they differ from the affinity's.
        own: parameters of the kind itself (not of its affinity).
        branches: how many branches its mixer has.
        combinable: may appear in an ``a+b`` combination.
        affinity: the affinity it is built from (default: the kind's name).
    """

    summary: str
    params: tuple[str, ...]
    preset: Callable[[dict[str, Any], Geometry], MixerCfg]
    defaults: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    own: tuple[Param, ...] = ()
    branches: int = 1
    combinable: bool = True
    affinity: str | None = None


def _presets() -> Any:
    from affinity.models import mixers

    return mixers


PUBLISHED: dict[str, Published] = {
    "axial_shift": Published(
        "AS-MLP: shift along W and along H, each with a 1x1 projection and GELU",
        ("shift_size", "dilation", "padding"),
        lambda p, g: _presets().as_mlp_mixer(**p),
        branches=2,
    ),
    "dwconv": Published(
        "depthwise convolution between 1x1 projections (Container's static stages)",
        ("kernel_size", "dilation", "padding"),
        lambda p, g: _presets().dwconv_mixer(**p),
        defaults={"kernel_size": 5},  # Container's 5x5; the preset's conv has a bias
    ),
    "attention": Published(
        "multi-head self-attention, global or in windows (Swin)",
        ("heads", "window_size", "qkv_bias", "rel_pos_bias"),
        lambda p, g: _presets().attention_mixer(
            heads=p["heads"],
            qkv_bias=p["qkv_bias"],
            window_size=p["window_size"],
            # Swin's relative position bias lives inside a window; global attention has none
            rel_pos_bias=p["rel_pos_bias"] and p["window_size"] is not None,
        ),
    ),
    "mixer_mlp": Published(
        "MLP-Mixer: two token layers N -> ratio·N -> N with a GELU between (serial)",
        (),
        lambda p, g: _presets().mixer_token_mlp(hidden=max(1, round(p["token_mlp_ratio"] * g.tokens))),
        own=(Param("token_mlp_ratio", 0.5, POSITIVE_NUMBER, "the token MLP's width over N"),),
        branches=2,
        combinable=False,
        affinity="token_mlp",
    ),
    "cycle_shift": Published(
        "CycleMLP: Cycle FCs 1xk and kx1 and a channel FC on one V, split-attention reweighted",
        ("kernel_size",),
        lambda p, g: _presets().cyclemlp_mixer(**p),
        branches=3,
        combinable=False,  # its reweighting is the mixer's, not a combination's
    ),
    "permute_mlp": Published(
        "Vision Permutator: Permute-MLP along H and W and a channel FC, split-attention reweighted",
        ("segment_dim",),
        lambda p, g: _presets().vip_mixer(**p),
        branches=3,
        combinable=False,
    ),
}


def _kind(name: str, cls: Any) -> Kind:
    """The kind ``name`` of affinity class ``cls``: published, or one branch in its layout."""
    pub = PUBLISHED.get(name)
    if pub is None:
        params = {p.name: p for p in cls.params if p.search}
        layout = dict(cls.layout)
        return Kind(
            name,
            cls.paper or name,
            params,
            cls.dynamic,
            lambda p, g: MixerCfg(branches=(BranchCfg(name, dict(p)),), **layout),
        )
    declared = {p.name: p for p in cls.params}
    params = {
        n: dataclasses.replace(declared[n], default=pub.defaults.get(n, declared[n].default))
        for n in pub.params
    }
    params.update({p.name: p for p in pub.own})
    return Kind(name, pub.summary, params, cls.dynamic, pub.preset, pub.branches, pub.combinable)


_CACHE: dict[tuple[str, ...], dict[str, Kind]] = {}


def kinds() -> dict[str, Kind]:
    """Every kind by name: one per registered affinity, then the published multi-affinity ones."""
    from affinity.ops import AFFINITIES

    names = tuple(AFFINITIES.names())
    if names not in _CACHE:
        table = {n: _kind(n, AFFINITIES.get(n)) for n in names}
        for name, pub in PUBLISHED.items():
            if name not in table and pub.affinity is not None:
                table[name] = _kind(name, AFFINITIES.get(pub.affinity))
        _CACHE.clear()
        _CACHE[names] = table
    return _CACHE[names]


@dataclass(frozen=True)
class MixerParam:
    """A mixer-level parameter with the condition under which it is sampled."""

    param: Param
    #: what the condition is, for messages
    condition: str


MIXER_PARAMS: dict[str, MixerParam] = {
    "connection": MixerParam(
        Param("connection", "parallel", one_of(CONNECTIONS), "how the branches combine"),
        "a kind with two or more branches (axial_shift or a combination a+b)",
    ),
    "coefficients": MixerParam(
        Param("coefficients", "sum", one_of(COEFFICIENTS), "how the branches are weighted"),
        "a parallel mixer",
    ),
    "alpha": MixerParam(
        Param("alpha", 1.0, NUMBER, "coefficient of dynamic branches"),
        "coefficients fixed or learnable and a dynamic branch (attention)",
    ),
    "beta": MixerParam(
        Param("beta", 1.0, NUMBER, "coefficient of static branches"),
        "coefficients fixed or learnable and a static branch",
    ),
}


def parse_kind(name: Any, path: str) -> tuple[Kind, ...]:
    """``'attention+dwconv'`` -> its base kinds; a SpaceError naming ``path`` otherwise."""
    table = kinds()
    combinable = ", ".join(n for n, k in table.items() if k.combinable)
    allowed = f"one of {', '.join(table)}, or a combination a+b of {combinable}"
    if not isinstance(name, str) or not name.strip():
        raise SpaceError(f"{path}: {name!r} is not a mixer kind; allowed: {allowed}")
    parts = [p.strip() for p in name.split("+")]
    found = []
    for part in parts:
        if part not in table:
            near = closest(part, table)
            hint = f" (did you mean {', '.join(near)}?)" if near else ""
            raise SpaceError(f"{path}: {part!r} is not a known affinity kind{hint}; allowed: {allowed}")
        found.append(table[part])
    if len(parts) > 1:
        if len(set(parts)) != len(parts):
            raise SpaceError(f"{path}: {name!r} repeats a kind; allowed: distinct kinds joined by +")
        for k in found:
            if not k.combinable:
                raise SpaceError(
                    f"{path}: {name!r} combines {k.name}, which is serial on its own; allowed: {allowed}"
                )
    return tuple(found)


def n_branches(kinds: tuple[Kind, ...]) -> int:
    """Branches the kinds make (AS-MLP's shift has two)."""
    return sum(k.branches for k in kinds)


def takes_connection(kinds: tuple[Kind, ...]) -> bool:
    """Two or more branches whose connection is free: not MLP-Mixer's serial token MLP nor the
    reweighted (parallel-only) mixers of CycleMLP and ViP, none of them combinable."""
    return n_branches(kinds) >= 2 and all(k.combinable for k in kinds)


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
        kind.preset({k: values.get(k, p.default) for k, p in kind.params.items()}, geometry) for kind in kinds
    ]
    mixer_values = {k: values[k] for k in MIXER_PARAMS if k in values}
    if len(presets) == 1:
        return dataclasses.replace(presets[0], **mixer_values)
    branches = tuple(b for p in presets for b in p.branches)
    defaults = {k: p.param.default for k, p in MIXER_PARAMS.items()}
    return MixerCfg(branches=branches, proj_in=True, proj_out=True, **{**defaults, **mixer_values})


def kinds_table() -> str:
    """The README's table of kinds, from the declarations (``python -m affinity.search.kinds``
    prints it; a test keeps the README's copy equal to it)."""
    rows = ["| kind | mixer | its parameters (default) |", "|---|---|---|"]
    for kind in kinds().values():
        params = "; ".join(
            f"`{p.name}` {p.allowed} ({_yaml(p.default)}): {p.help}" for p in kind.params.values()
        )
        rows.append(f"| `{kind.name}` | {kind.summary} | {params or 'none'} |")
    return "\n".join(rows)


def _yaml(value: Any) -> str:
    return "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


if __name__ == "__main__":
    print(kinds_table())
