"""``StageCfg`` / ``ModelCfg``: a network's architecture as frozen dataclasses, their dict
form, and the check that every branch names a registered affinity and its declared
parameters. Public through ``affinity.models.config``."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from affinity.errors import ConfigError, UnknownNameError, check_int
from affinity.ops.config import MixerCfg, fields_from

FAMILIES = ("isotropic", "hierarchical")
#: fields added after configs were first hashed: left out of the dict at their default
_OMITTED_AT_DEFAULT = ("embed_act", "block")
#: block norms in the (B, C, H, W) layout: layernorm over C; groupnorm with one group (over
#: C, H, W; AS-MLP); batchnorm (RepMLPNet, Container); affine: per-channel α·x + β (ResMLP).
NORMS = ("layernorm", "groupnorm", "batchnorm", "affine")
#: stage-0 embedding: ``patch``: p×p stride-p conv with bias [+ embed_act] [+ embed_norm];
#: ``overlap``: the same with a (2p−1)×(2p−1) kernel and padding p//2, overlapping patches
#: (PoolFormer, CycleMLP: 7×7 stride 4 for the stem, 3×3 stride 2 between stages);
#: ``conv_bn_relu``: p×p stride-p conv without bias, BatchNorm, ReLU (RepMLPNet).
STEMS = ("patch", "overlap", "conv_bn_relu")
#: embedding at the start of stages 1..: ``merge``: p×p space-to-depth, norm over p²C, linear
#: p²C -> C' without bias (Swin, AS-MLP); the others as for the stem.
DOWNSAMPLES = ("merge", "patch", "overlap", "conv_bn_relu")
#: ``prenorm``: ``x + mixer(norm1(x))`` then ``x + mlp(norm2(x))`` (every MetaFormer);
#: ``convmixer``: ``x + mixer(x)`` then ``norm(act(pw(x)))`` with no residual (ConvMixer,
#: Trockman & Kolter 2022: its mixer carries its own activation and BatchNorm).
BLOCKS = ("prenorm", "convmixer")
POOLS = ("avg", "token")
GATES = ("global_perceptron",)
ACTS = ("gelu", "relu")


@dataclass(frozen=True)
class StageCfg:
    """One stage: an embedding (patch embedding or downsampling) then ``depth`` blocks.

    Args:
        dim: channels of the stage.
        depth: number of blocks.
        mixer: the token mixer of every block (a ``ContextAggregation``).
        patch_size: stride of the stage's embedding (the stem's patch size for stage 0).
        channel_mlp_ratio: hidden width of the channel MLP over ``dim``; 0: no channel MLP
            (gMLP, whose mixer is the whole block).
        pos_mixer: a residual token mixer run before the block's pre-norm,
            ``x = x + pos_mixer(x)`` (Container's conditional position encoding, a depthwise
            3×3 conv); ``None`` for none.
        alt_mixer: the token mixer of every second block (blocks 1, 3, ...), or ``None`` for
            ``mixer`` everywhere (Swin: shifted windows in every second block).
    """

    dim: int
    depth: int
    mixer: MixerCfg
    patch_size: int = 2
    channel_mlp_ratio: float = 4.0
    pos_mixer: MixerCfg | None = None
    alt_mixer: MixerCfg | None = None

    def __post_init__(self) -> None:
        check_int("dim", self.dim, 1)
        check_int("depth", self.depth, 1)
        check_int("patch_size", self.patch_size, 1)
        ratio = self.channel_mlp_ratio
        # finite, and a hidden width a tensor can have (1e300 overflowed torch.empty)
        if (
            not isinstance(ratio, (int, float))
            or isinstance(ratio, bool)
            or not 0 <= ratio * self.dim < 2**31
        ):
            raise ConfigError(
                f"channel_mlp_ratio={ratio!r} is not allowed: a number > 0, or 0 for none "
                f"(dim x ratio under 2^31)"
            )
        if not isinstance(self.mixer, MixerCfg):
            raise ConfigError(f"mixer={self.mixer!r} is not allowed: a MixerCfg")
        for name in ("pos_mixer", "alt_mixer"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, MixerCfg):
                raise ConfigError(f"{name}={value!r} is not allowed: a MixerCfg or None")

    def mixer_of(self, block: int) -> MixerCfg:
        """The token mixer of block ``block`` of this stage."""
        return self.alt_mixer if self.alt_mixer is not None and block % 2 == 1 else self.mixer

    def mixers(self) -> dict[str, MixerCfg]:
        """Every mixer config of the stage by field name (``mixer``, ``pos_mixer``, ``alt_mixer``)."""
        out = {"mixer": self.mixer, "pos_mixer": self.pos_mixer, "alt_mixer": self.alt_mixer}
        return {k: v for k, v in out.items() if v is not None}

    def to_dict(self) -> dict[str, Any]:
        return {
            "dim": self.dim,
            "depth": self.depth,
            "patch_size": self.patch_size,
            "channel_mlp_ratio": self.channel_mlp_ratio,
            "mixer": self.mixer.to_dict(),
            "pos_mixer": None if self.pos_mixer is None else self.pos_mixer.to_dict(),
            "alt_mixer": None if self.alt_mixer is None else self.alt_mixer.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Any, where: str = "stage") -> StageCfg:
        kwargs = fields_from(cls, data, where)
        for key in ("mixer", "pos_mixer", "alt_mixer"):
            value = kwargs.get(key)
            if isinstance(value, Mapping):
                kwargs[key] = mixer_from_dict(value, f"{where}.{key}")
        try:
            return cls(**kwargs)
        except TypeError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        except ConfigError as exc:
            raise ConfigError(f"{where}.{exc}") from None


@dataclass(frozen=True)
class ModelCfg:
    """A whole network: its family, stages and the layers around the token mixers.

    Args:
        family: ``isotropic`` (one stage, one resolution: Mixer, ResMLP, S2-MLP, DeiT) or
            ``hierarchical`` (several stages, each starting with a downsampling).
        stages: the stages, in order (exactly one for ``isotropic``).
        norm: norm of the blocks' pre-norms and of ``merge`` downsampling (see ``NORMS``).
        norm_eps: epsilon of those norms.
        stem: the stage-0 embedding (see ``STEMS``).
        downsample: the embedding of later stages (see ``DOWNSAMPLES``).
        embed_norm: norm after a ``patch`` or ``overlap`` embedding (stem or downsample), or ``None``.
        embed_act: activation between that embedding's conv and its norm (ConvMixer), or ``None``.
        block: ``prenorm`` or ``convmixer`` (see ``BLOCKS``).
        head_norm: norm before pooling, or ``None``.
        pool: ``avg`` (global average) or ``token`` (the class token).
        channel_mlp_act: activation of the channel MLP.
        channel_mlp_bias: biases on the channel MLP's two 1×1 layers.
        channel_mlp_norm: a norm after each channel-MLP layer (RepMLPNet's conv-BN), or None.
        layer_scale: LayerScale initial value on both residual branches; ``"auto"`` picks
            ResMLP's rule from the total depth (0.1 up to 18, 1e-5 up to 24, 1e-6 beyond);
            ``None`` for none.
        drop_path_rate: stochastic depth, increasing linearly to this rate over the blocks.
        class_token: prepend a learned class token (isotropic only).
        pos_embed: add a learned position embedding to the tokens (isotropic only).
        gate: a per-channel gate on the mixer output computed from the pooled block input
            (``global_perceptron``: RepMLPNet), or ``None``.
        gate_reduce: hidden width reduction of the gate's two layers.
    """

    family: str
    stages: tuple[StageCfg, ...]
    norm: str = "layernorm"
    norm_eps: float = 1e-5
    stem: str = "patch"
    downsample: str = "merge"
    embed_norm: str | None = None
    head_norm: str | None = "layernorm"
    pool: str = "avg"
    channel_mlp_act: str = "gelu"
    channel_mlp_bias: bool = True
    channel_mlp_norm: str | None = None
    layer_scale: float | str | None = None
    drop_path_rate: float = 0.0
    class_token: bool = False
    pos_embed: bool = False
    gate: str | None = None
    gate_reduce: int = 4
    embed_act: str | None = None
    block: str = "prenorm"

    def __post_init__(self) -> None:
        if isinstance(self.stages, list):
            object.__setattr__(self, "stages", tuple(self.stages))
        choices: tuple[tuple[str, Any, tuple[Any, ...]], ...] = (
            ("family", self.family, FAMILIES),
            ("norm", self.norm, NORMS),
            ("stem", self.stem, STEMS),
            ("downsample", self.downsample, DOWNSAMPLES),
            ("embed_norm", self.embed_norm, (*NORMS, None)),
            ("head_norm", self.head_norm, (*NORMS, None)),
            ("pool", self.pool, POOLS),
            ("channel_mlp_act", self.channel_mlp_act, ACTS),
            ("channel_mlp_norm", self.channel_mlp_norm, (*NORMS, None)),
            ("gate", self.gate, (*GATES, None)),
            ("embed_act", self.embed_act, (*ACTS, None)),
            ("block", self.block, BLOCKS),
        )
        for name, value, allowed in choices:
            if value not in allowed:
                raise ConfigError(f"{name}={value!r} is not allowed: one of {list(allowed)}")
        if not self.stages or not all(isinstance(s, StageCfg) for s in self.stages):
            raise ConfigError(f"stages={self.stages!r} is not allowed: a non-empty list of stages")
        if self.family == "isotropic" and len(self.stages) != 1:
            raise ConfigError(
                f"stages has {len(self.stages)} entries for family='isotropic': "
                "an isotropic model has one stage"
            )
        if (self.class_token or self.pos_embed) and self.family != "isotropic":
            raise ConfigError("class_token/pos_embed=True is not allowed: only for family='isotropic'")
        if self.pool == "token" and not self.class_token:
            raise ConfigError("pool='token' is not allowed without class_token=True")
        if not (isinstance(self.drop_path_rate, (int, float)) and 0.0 <= self.drop_path_rate < 1.0):
            raise ConfigError(f"drop_path_rate={self.drop_path_rate!r} is not allowed: a number in [0, 1)")
        ls = self.layer_scale
        if not (ls is None or ls == "auto" or (isinstance(ls, (int, float)) and ls > 0)):
            raise ConfigError(f"layer_scale={ls!r} is not allowed: a number > 0, 'auto' or null")
        if (
            isinstance(self.norm_eps, bool)
            or not isinstance(self.norm_eps, (int, float))
            or self.norm_eps <= 0
        ):
            raise ConfigError(f"norm_eps={self.norm_eps!r} is not allowed: a number > 0")
        check_int("gate_reduce", self.gate_reduce, 1)

    # --- derived -----------------------------------------------------------------------
    @property
    def depth(self) -> int:
        """Total number of blocks."""
        return sum(s.depth for s in self.stages)

    @property
    def stride(self) -> int:
        """Total downsampling factor (product of the stages' patch sizes)."""
        out = 1
        for s in self.stages:
            out *= s.patch_size
        return out

    def layer_scale_init(self) -> float | None:
        """The LayerScale initial value this config asks for (``auto`` resolved)."""
        if self.layer_scale == "auto":
            return 0.1 if self.depth <= 18 else 1e-5 if self.depth <= 24 else 1e-6
        return None if self.layer_scale is None else float(self.layer_scale)

    def canonical(self) -> ModelCfg:
        """This configuration with every mixer in canonical form (``affinity.ops.canonical``):
        parameters that change nothing removed, so equivalent configurations are equal."""
        from affinity.ops.canonical import canonical_mixer

        stages = []
        for s in self.stages:
            changes: dict[str, Any] = {k: canonical_mixer(m) for k, m in s.mixers().items()}
            stages.append(dataclasses.replace(s, **changes))
        return dataclasses.replace(self, stages=tuple(stages))

    def fingerprint(self) -> str:
        """12 hex digits of the architecture (equal configs, equal fingerprints).

        The dataclass itself is not hashable (branch ``params`` are dicts); search trials
        use this to recognise duplicates.
        """
        import hashlib
        import json

        text = json.dumps(self.to_dict(), sort_keys=True, default=list, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    # --- dict / YAML --------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The dict form; ``embed_act`` and ``block`` only when set, so configs without them keep
        their old dict (and their fingerprint / config hash)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in _OMITTED_AT_DEFAULT and value == f.default:
                continue
            out[f.name] = [s.to_dict() for s in value] if f.name == "stages" else value
        return out

    @classmethod
    def from_dict(cls, data: Any, where: str = "model") -> ModelCfg:
        """Build from the dict form; an unknown key raises ``ConfigError`` naming its path."""
        kwargs = fields_from(cls, data, where)
        stages = kwargs.get("stages")
        if not isinstance(stages, (list, tuple)):
            raise ConfigError(f"{where}.stages={stages!r} is not allowed: a list of stages")
        kwargs["stages"] = tuple(
            s if isinstance(s, StageCfg) else StageCfg.from_dict(s, f"{where}.stages[{i}]")
            for i, s in enumerate(stages)
        )
        try:
            cfg = cls(**kwargs)
        except TypeError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        except ConfigError as exc:
            raise ConfigError(f"{where}.{exc}") from None
        return cfg


# --- branch parameters ---------------------------------------------------------------------
def affinity_params(name: str) -> set[str]:
    """Hyperparameter names the registered affinity ``name`` declares (``Affinity.params``)."""
    from affinity.ops import AFFINITIES

    return set(AFFINITIES.get(name).param_names())


def check_mixer(mixer: MixerCfg, where: str) -> None:
    """Every branch names a registered affinity and only parameters it declares."""
    from affinity.ops import AFFINITIES

    for i, branch in enumerate(mixer.branches):
        if branch.affinity not in AFFINITIES:
            try:
                AFFINITIES.get(branch.affinity)
            except UnknownNameError as exc:
                raise ConfigError(f"{where}.branches[{i}].affinity: {exc}") from None
        accepted = affinity_params(branch.affinity)
        for key in branch.params:
            if key not in accepted:
                raise ConfigError(
                    f"{where}.branches[{i}].params.{key} is not a known key of affinity "
                    f"{branch.affinity!r}: allowed {sorted(accepted)}"
                )


def check_model(cfg: ModelCfg, where: str = "model") -> None:
    """Validate every mixer's branches against the registered affinities."""
    for i, stage in enumerate(cfg.stages):
        for name, mixer in stage.mixers().items():
            check_mixer(mixer, f"{where}.stages[{i}].{name}")


def mixer_from_dict(data: Mapping[str, Any], where: str) -> MixerCfg:
    try:
        mixer = MixerCfg.from_dict(data, where)
    except TypeError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    except ConfigError as exc:
        msg = str(exc)
        raise ConfigError(msg if msg.startswith(where) else f"{where}.{msg}") from None
    check_mixer(mixer, where)
    return mixer
