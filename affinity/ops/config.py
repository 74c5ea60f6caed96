"""Mixers as data: the frozen configuration a ``ContextAggregation`` is built from.

A search trial, a registered model and a YAML file all describe a token mixer with these
two dataclasses; ``ContextAggregation.from_cfg(cfg, dim=..., hw=...)`` builds it. The dict
form (``to_dict`` / ``from_dict``) is what YAML files hold.

The mixer computes, in the (B, C, H, W) layout::

    V = proj_in(x)                      # 1x1 (C->D) [-> norm] [-> act] [-> value_norm], or identity
    parallel: U = Σ_b c_b · branch_b(V)  # c_b = α for dynamic branches, β for static ones
    serial:   U = branch_k(...branch_1(V))
    Y = proj_out(U)                     # [norm ->] 1x1 (D->C), or identity

with ``D = width_ratio·C`` (C unless gMLP's wider values ask otherwise).

where ``branch_b(V) = act(proj(norm(A_b(V, x))))`` (norm, projection and activation optional),
and the residual ``+ X`` is added by the block, not the mixer.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from affinity.errors import ConfigError

CONNECTIONS = ("parallel", "serial")
#: sum: every branch weighted 1; fixed: α (dynamic) and β (static) as given; learnable:
#: independent α, β learned (per block, or per head with ``coef_per_head``), initialised at
#: the given values; convex: α = sigmoid(w), β = 1 − α, one w per block initialised at 0
#: (Container's released code); reweight: per image and channel, softmax over the branches of
#: an MLP C -> C/4 -> C·n_branches of the branches' summed, token-averaged output (the split
#: attention of CycleMLP and Vision Permutator, ``reweight``).
COEFFICIENTS = ("sum", "fixed", "learnable", "convex", "reweight")
NORMS = ("groupnorm", "layernorm", "batchnorm", None)
ACTIVATIONS = ("gelu", "relu", None)
#: per-branch norms after the affinity: ``batchnorm`` is BatchNorm2d over the C channels;
#: ``shared_batchnorm`` is BatchNorm over the affinity's S share sets, statistics pooled over
#: the C/S channels of a set (RepMLPNet's ``fc3_bn`` and conv-BN branches, BatchNorm2d(S) on
#: the map reshaped to (B·C/S, S, h, w)).
BRANCH_NORMS = ("batchnorm", "shared_batchnorm", None)


@dataclass(frozen=True)
class BranchCfg:
    """One branch: an affinity, then an optional norm, 1x1 projection and activation.

    Args:
        affinity: a registered affinity name (``affinity affinities`` lists them).
        params: the affinity's own hyperparameters (``shift_size``, ``heads``, ...).
        proj: a per-branch 1x1 projection C->C with bias after the affinity (AS-MLP).
        act: activation after the projection (or after the affinity when ``proj`` is off).
        norm: a norm right after the affinity, before the projection and activation (see
            ``BRANCH_NORMS``; RepMLPNet: ``shared_batchnorm`` on the FC and each conv branch).
    """

    affinity: str
    params: Mapping[str, Any] = field(default_factory=dict)
    proj: bool = False
    act: str | None = None
    norm: str | None = None

    def __post_init__(self) -> None:
        if self.act not in ACTIVATIONS:
            raise ConfigError(f"act={self.act!r} is not allowed: one of {ACTIVATIONS}")
        if self.norm not in BRANCH_NORMS:
            raise ConfigError(f"norm={self.norm!r} is not allowed: one of {BRANCH_NORMS}")

    def to_dict(self) -> dict[str, Any]:
        """The dict form; ``norm`` only when set, so configs without one keep their old dict
        (and their fingerprint / config hash)."""
        out = {"affinity": self.affinity, "params": dict(self.params), "proj": self.proj, "act": self.act}
        if self.norm is not None:
            out["norm"] = self.norm
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "branch") -> BranchCfg:
        return cls(**fields_from(cls, data, where))


@dataclass(frozen=True)
class MixerCfg:
    """A context aggregation: branches, how they combine, and the projections around them.

    Args:
        branches: one or more ``BranchCfg``.
        connection: ``parallel`` (weighted sum) or ``serial`` (each branch feeds the next).
        coefficients: ``sum`` | ``fixed`` | ``learnable`` | ``convex`` (see ``COEFFICIENTS``).
        alpha: coefficient of dynamic branches (fixed value, or learnable initial value).
        beta: coefficient of static branches.
        coef_per_head: learnable coefficients per head rather than per block.
        proj_in: ``V = x·W_v`` as a 1x1 projection C->C; off: ``V = x``.
        proj_in_norm: norm after the input projection (AS-MLP: ``groupnorm``).
        proj_in_act: activation after it (AS-MLP, S2-MLP: ``gelu``).
        proj_out: the output projection ``W`` (1x1, C->C); off: identity.
        proj_out_norm: norm before the output projection (AS-MLP: ``groupnorm``).
        proj_bias: biases on the 1x1 projections.
        width_ratio: channels of V over the mixer's C (gMLP's values: 3); the input projection
            maps C to ``round(width_ratio·C)`` and the output projection back (both needed
            when it is not 1).
        value_norm: a norm on V after the input projection's activation (gMLP's LayerNorm on
            Z₂; AS-MLP's ``proj_in_norm`` comes before the activation).
    """

    branches: tuple[BranchCfg, ...]
    connection: str = "parallel"
    coefficients: str = "sum"
    alpha: float = 1.0
    beta: float = 1.0
    coef_per_head: bool = False
    proj_in: bool = True
    proj_in_norm: str | None = None
    proj_in_act: str | None = None
    proj_out: bool = True
    proj_out_norm: str | None = None
    proj_bias: bool = True
    width_ratio: float = 1.0
    value_norm: str | None = None

    def __post_init__(self) -> None:
        if not self.branches:
            raise ConfigError("branches=[] is not allowed: a mixer needs at least one branch")
        if self.coefficients == "reweight" and self.connection != "parallel":
            raise ConfigError(
                "coefficients='reweight' is not allowed with connection='serial': parallel only"
            )
        ratio = self.width_ratio
        if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or ratio <= 0:
            raise ConfigError(f"width_ratio={ratio!r} is not allowed: a number > 0")
        if ratio != 1 and not (self.proj_in and self.proj_out):
            raise ConfigError(
                f"width_ratio={ratio!r} is not allowed without proj_in and proj_out: they change the width"
            )
        checks = (
            ("connection", self.connection, CONNECTIONS),
            ("coefficients", self.coefficients, COEFFICIENTS),
            ("proj_in_norm", self.proj_in_norm, NORMS),
            ("proj_out_norm", self.proj_out_norm, NORMS),
            ("proj_in_act", self.proj_in_act, ACTIVATIONS),
            ("value_norm", self.value_norm, NORMS),
        )
        for name, value, allowed in checks:
            if value not in allowed:
                raise ConfigError(f"{name}={value!r} is not allowed: one of {allowed}")

    def to_dict(self) -> dict[str, Any]:
        """The dict form; ``width_ratio`` and ``value_norm`` only when set, so configs without
        them keep their old dict (and their fingerprint / config hash)."""
        out = dataclasses.asdict(self)
        out["branches"] = [b.to_dict() for b in self.branches]
        for key, default in (("width_ratio", 1.0), ("value_norm", None)):
            if out[key] == default:
                del out[key]
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "mixer") -> MixerCfg:
        kwargs = fields_from(cls, data, where)
        branches = kwargs.get("branches")
        if not isinstance(branches, (list, tuple)):
            raise ConfigError(f"{where}.branches={branches!r} is not allowed: a list of branches")
        kwargs["branches"] = tuple(
            b
            if isinstance(b, BranchCfg)
            else BranchCfg.from_dict(_mapping(b, f"{where}.branches[{i}]"), f"{where}.branches[{i}]")
            for i, b in enumerate(branches)
        )
        return cls(**kwargs)


def _mapping(data: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}={data!r} is not allowed: a mapping")
    return data


def fields_from(cls: type, data: Any, where: str) -> dict[str, Any]:
    """Keyword arguments of dataclass ``cls`` from ``data``; unknown keys name their path."""
    data = _mapping(data, where)
    known = {f.name for f in dataclasses.fields(cls)}
    for key in data:
        if key not in known:
            raise ConfigError(f"{where}.{key} is not a known key: allowed {sorted(known)}")
    return dict(data)
