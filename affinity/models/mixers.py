"""Token-mixer presets: each returns the ``MixerCfg`` of one published mixer.

The model table (affinity.models.zoo) and the search (candidates built from these presets)
share them, so a searched mixer is the published one with some hyperparameters changed.
All arguments are keyword-only; every preset is a ``ContextAggregation`` of registered
affinities, in the block ``x = x + mixer(norm(x))``.
"""

from __future__ import annotations

from typing import Any

from affinity.ops.config import BranchCfg, MixerCfg


def as_mlp_mixer(
    *,
    shift_size: int = 5,
    dilation: int = 1,
    padding: str = "zero",
    connection: str = "parallel",
    norm: str | None = "groupnorm",
) -> MixerCfg:
    """AS-MLP's axial-shift mixer (Lian et al., ICLR 2022, fig. 2; svip-lab/AS-MLP).

    1×1 conv → norm → GELU → [shift along W → 1×1 conv → GELU] and [shift along H → 1×1 conv
    → GELU] (summed when ``parallel``; H after W when ``serial``) → norm → 1×1 conv.

    Args:
        shift_size: channel groups of each axial shift (odd).
        dilation: step between the groups' shifts.
        padding: ``zero`` | ``circular`` | ``reflect`` | ``replicate``.
        connection: ``parallel`` (the paper's choice) or ``serial``.
        norm: the norm around the shifts (GroupNorm with one group in the released code).
    """
    params = {"shift_size": shift_size, "dilation": dilation, "padding": padding}
    return MixerCfg(
        branches=(
            BranchCfg("axial_shift", {**params, "axis": "w"}, proj=True, act="gelu"),
            BranchCfg("axial_shift", {**params, "axis": "h"}, proj=True, act="gelu"),
        ),
        connection=connection,
        coefficients="sum",
        proj_in=True,
        proj_in_norm=norm,
        proj_in_act="gelu",
        proj_out=True,
        proj_out_norm=norm,
    )


def s2mlp_mixer() -> MixerCfg:
    """S²-MLP's spatial-shift mixer (Yu et al., WACV 2022, eq. 4): ``FC2(shift(GELU(FC1(x))))``."""
    return MixerCfg(
        branches=(BranchCfg("spatial_shift"),),
        proj_in=True,
        proj_in_act="gelu",
        proj_out=True,
    )


def attention_mixer(
    *,
    heads: int,
    qkv_bias: bool = True,
    window_size: int | None = None,
    shift_size: int = 0,
    rel_pos_bias: bool = False,
) -> MixerCfg:
    """Multi-head self-attention, ``Y = softmax(QKᵀ/√d)·V·W`` (ViT/DeiT; Swin with a window).

    V is the mixer's input projection, W its output projection; the attention affinity owns
    its Q, K projection.

    Args:
        heads: attention heads (divides the stage's channels).
        qkv_bias: biases on the Q, K, V projections.
        window_size: window side for windowed attention (Swin), or None for global.
        shift_size: cyclic shift of the windows (Swin's shifted windows; 0 for none).
        rel_pos_bias: a learned relative position bias added to the logits (Swin).
    """
    params: dict[str, Any] = {"heads": heads, "qkv_bias": qkv_bias}
    if window_size is not None:
        params["window_size"] = window_size
        params["shift_size"] = shift_size
    if rel_pos_bias:
        params["rel_pos_bias"] = True
    return MixerCfg(
        branches=(BranchCfg("attention", params),),
        coefficients="sum",
        proj_in=True,
        proj_bias=qkv_bias,
        proj_out=True,
    )


def dwconv_mixer(
    *,
    kernel_size: int = 5,
    dilation: int = 1,
    padding: str = "zero",
    bias: bool = True,
    proj: bool = True,
) -> MixerCfg:
    """A depthwise-conv mixer, 1×1 → k×k depthwise → 1×1 (Container-Light stages 1–3).

    Args:
        kernel_size: odd k.
        dilation: conv dilation.
        padding: ``zero`` | ``circular`` | ``reflect`` | ``replicate``.
        bias: bias of the depthwise conv.
        proj: the 1×1 projections around it (off: the conv alone).
    """
    params = {"kernel_size": kernel_size, "dilation": dilation, "padding": padding, "bias": bias}
    return MixerCfg(branches=(BranchCfg("dwconv", params),), proj_in=proj, proj_out=proj)


def pos_conv_mixer(*, kernel_size: int = 3) -> MixerCfg:
    """Container's conditional position encoding, ``x + dw3×3(x)``: a depthwise conv alone.

    Args:
        kernel_size: odd k (3 in Container).
    """
    return MixerCfg(
        branches=(BranchCfg("dwconv", {"kernel_size": kernel_size, "bias": True}),),
        proj_in=False,
        proj_out=False,
    )


def resmlp_mixer() -> MixerCfg:
    """ResMLP's token mixer: one ``Linear(N, N)`` across tokens with bias (Touvron et al. 2022)."""
    return MixerCfg(branches=(BranchCfg("token_mlp", {"bias": True}),), proj_in=False, proj_out=False)


def mixer_token_mlp(*, hidden: int, tokens: int | None = None) -> MixerCfg:
    """MLP-Mixer's token MLP, N → D_S → N with a GELU between (Tolstikhin et al. 2021, eq. 1).

    Two static affinities in series: the first writes a (B, C, 1, D_S) row, the second
    reads it back to the map.

    Args:
        hidden: D_S, the token-MLP width.
        tokens: N; None takes it from the map (so one config serves any input size).
    """
    first: dict[str, Any] = {"out_tokens": hidden, "bias": True}
    second: dict[str, Any] = {"in_tokens": hidden, "bias": True}
    if tokens is not None:
        first["in_tokens"] = tokens
        second["out_tokens"] = tokens
    return MixerCfg(
        branches=(BranchCfg("token_mlp", first, act="gelu"), BranchCfg("token_mlp", second)),
        connection="serial",
        proj_in=False,
        proj_out=False,
    )


def container_mixer(
    *,
    heads: int,
    kernel_size: int = 5,
    coefficients: str = "convex",
    alpha: float = 1.0,
    beta: float = 1.0,
    qkv_bias: bool = True,
) -> MixerCfg:
    """Container's mixer: ``((α·A(X) + β·A)·V)·W``, attention plus a depthwise conv on one V.

    As Container-Light's stage 4 (allenai/container ``MixBlock``): α = sigmoid(w), β = 1 − α
    with one w per block (``convex``).

    Args:
        heads: attention heads.
        kernel_size: the depthwise conv's k (static affinity).
        coefficients: ``convex`` | ``learnable`` | ``fixed`` | ``sum``.
        alpha: α (fixed value or initial value when learnable).
        beta: β (likewise).
        qkv_bias: biases on Q, K and V.
    """
    return MixerCfg(
        branches=(
            BranchCfg("attention", {"heads": heads, "qkv_bias": qkv_bias}),
            BranchCfg("dwconv", {"kernel_size": kernel_size, "bias": True}),
        ),
        coefficients=coefficients,
        alpha=alpha,
        beta=beta,
        proj_in=True,
        proj_bias=True,
        proj_out=True,
    )


def pam_mixer(*, heads: int, qkv_bias: bool = True) -> MixerCfg:
    """Container-PAM: attention plus a learned per-head static affinity over all tokens,
    added after the softmax with α = β = 1 (Gao et al. 2021, sec. 3.3 and released code).

    Args:
        heads: attention heads; the static affinity has one matrix per head.
        qkv_bias: biases on Q, K and V.
    """
    return MixerCfg(
        branches=(
            BranchCfg("attention", {"heads": heads, "qkv_bias": qkv_bias}),
            BranchCfg("token_mlp", {"heads": heads, "bias": False}),
        ),
        coefficients="sum",
        proj_in=True,
        proj_bias=qkv_bias,
        proj_out=True,
    )


def repmlp_mixer(*, share: int, kernels: tuple[int, ...] = (1, 3), deploy: bool = False) -> MixerCfg:
    """RepMLPNet's token mixer (Ding et al., CVPR 2022): a grouped FC over the whole map, S
    share sets of hw×hw, plus training-time depthwise conv branches (kernels 1 and 3) with the
    same S kernel sets. As the released code (``fc3`` + ``fc3_bn``, ``conv_bn`` branches),
    each branch is followed by a BatchNorm over the S share sets (``shared_batchnorm``);
    ``reparameterize()`` folds the norms into their branches and the conv branches into the
    FC, leaving the FC with a bias (the deploy form).

    Args:
        share: S, the share sets (divides the stage's channels).
        kernels: the local conv branches' kernel sizes.
        deploy: the deploy form: the FC alone, with a bias and no norm (``kernels`` unused).
    """
    sets = {"share": share, "share_layout": "interleaved"}
    if deploy:
        branches = [BranchCfg("token_mlp", {**sets, "bias": True})]
    else:
        norm = "shared_batchnorm"
        branches = [BranchCfg("token_mlp", {**sets, "bias": False}, norm=norm)]
        branches += [
            BranchCfg("dwconv", {**sets, "kernel_size": k, "bias": False}, norm=norm) for k in kernels
        ]
    return MixerCfg(branches=tuple(branches), coefficients="sum", proj_in=False, proj_out=False)


def identity_mixer() -> MixerCfg:
    """No token mixing at all (A = I, no projections): the "MLP only" baseline."""
    return MixerCfg(branches=(BranchCfg("identity"),), proj_in=False, proj_out=False)


def poolformer_mixer(*, pool_size: int = 3) -> MixerCfg:
    """PoolFormer's token mixer, ``AvgPool(x) − x`` with no projections (Yu et al., CVPR 2022).

    Args:
        pool_size: the pooling window's odd side.
    """
    return MixerCfg(branches=(BranchCfg("pooling", {"pool_size": pool_size}),), proj_in=False, proj_out=False)


def gfnet_mixer() -> MixerCfg:
    """GFNet's global filter layer, ``F⁻¹[K ⊙ F[x]]`` with no projections (Rao et al. 2021)."""
    return MixerCfg(branches=(BranchCfg("global_filter"),), proj_in=False, proj_out=False)


def gmlp_mixer(*, width_ratio: float = 3.0) -> MixerCfg:
    """gMLP's whole block body (Liu et al. 2021, fig. 1): ``Z = GELU(x·U)``, the spatial gating
    unit ``Z₁ ⊙ (W·LN(Z₂) + b)``, then ``·V`` back to the block width.

    V = ``LN(GELU(x·U₂))`` is the mixer's input projection (to ``width_ratio·C`` channels, half
    of gMLP's d_ffn), its activation and value norm; the affinity owns the gate ``Z₁``.

    Args:
        width_ratio: ``d_ffn / (2·d_model)`` (3 in every gMLP).
    """
    return MixerCfg(
        branches=(BranchCfg("spatial_gating"),),
        proj_in=True,
        proj_in_act="gelu",
        value_norm="layernorm",
        proj_out=True,
        width_ratio=width_ratio,
    )


def cyclemlp_mixer(*, kernel_size: int = 3) -> MixerCfg:
    """CycleMLP's token mixer (Chen et al., ICLR 2022; ShoufaChen/CycleMLP ``CycleMLP``): two
    Cycle FCs (pseudo-kernels 1×k and k×1: a cycle shift then a 1×1 projection) and a channel
    FC on one V = x, combined by the split-attention ``reweight``, then a projection.

    Args:
        kernel_size: the pseudo-kernel's length k (3).
    """
    return MixerCfg(
        branches=(
            BranchCfg("cycle_shift", {"kernel_size": kernel_size, "axis": "w"}, proj=True),
            BranchCfg("cycle_shift", {"kernel_size": kernel_size, "axis": "h"}, proj=True),
            BranchCfg("identity", proj=True),
        ),
        coefficients="reweight",
        proj_in=False,
        proj_out=True,
    )


def vip_mixer(*, segment_dim: int | None = None) -> MixerCfg:
    """Vision Permutator's Weighted Permute-MLP (Hou et al., TPAMI 2022; ``WeightedPermuteMLP``):
    the height and width Permute-MLP branches and a channel FC on one V = x, combined by the
    split-attention ``reweight``, then a projection.

    Args:
        segment_dim: the segments G; None: the map's side, as ViP (so that H·S = C).
    """
    params = {} if segment_dim is None else {"segment_dim": segment_dim}
    return MixerCfg(
        branches=(
            BranchCfg("permute_mlp", {**params, "axis": "h"}),
            BranchCfg("permute_mlp", {**params, "axis": "w"}),
            BranchCfg("identity", proj=True),
        ),
        coefficients="reweight",
        proj_in=False,
        proj_out=True,
    )


def convmixer_mixer(*, kernel_size: int = 9, act: str = "gelu") -> MixerCfg:
    """ConvMixer's token mixer, ``BN(act(dwconv_k(x)))`` (Trockman & Kolter 2022, eq. 2).

    Args:
        kernel_size: the depthwise kernel's odd side (9 for 1536/20, 7 for 768/32).
        act: ``gelu`` or ``relu`` (the released 768/32 uses ReLU).
    """
    return MixerCfg(
        branches=(BranchCfg("dwconv", {"kernel_size": kernel_size, "bias": True}, act=act),),
        proj_in=False,
        proj_out=False,
        proj_out_norm="batchnorm",
    )


__all__ = [
    "as_mlp_mixer",
    "attention_mixer",
    "container_mixer",
    "convmixer_mixer",
    "cyclemlp_mixer",
    "dwconv_mixer",
    "gfnet_mixer",
    "gmlp_mixer",
    "identity_mixer",
    "mixer_token_mlp",
    "pam_mixer",
    "poolformer_mixer",
    "pos_conv_mixer",
    "repmlp_mixer",
    "resmlp_mixer",
    "s2mlp_mixer",
    "vip_mixer",
]
