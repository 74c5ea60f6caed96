"""Every source checkpoint layout affinity reads, one ``Format`` table each.

Layouts were read from the sources named in each ``Format.source``; the tests write each
layout out (names and shapes, small configs) and check every tensor lands where the
source's forward uses it (tests/checkpoints/).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor

from affinity.checkpoints.convert import Format, Rule, rule

_AFFINE = r"(weight|bias)"
_BN = r"(weight|bias|running_mean|running_var|num_batches_tracked)"
_LN_OR_AFFINE = r"(weight|bias|alpha|beta)"
_B0 = "stages.0.blocks.{g1}"  # an isotropic model's block g1


def _isotropic_head(norm: str = _AFFINE) -> tuple[Rule, ...]:
    """timm's isotropic models: ``norm`` then ``head``."""
    return (
        rule(rf"norm\.{norm}", "head_norm.{g1}", "reshape"),
        rule(rf"head\.{_AFFINE}", "head.{g1}"),
    )


def _qkv(src: str, block: str) -> Rule:
    """A fused q,k,v projection ``src`` (rows q | k | v, each head-major) into our attention's
    Q,K projection and the mixer's V projection."""
    g = "{g" + str(src.count("(") + 1) + "}"  # the weight|bias group, after src's own
    return Rule(
        rf"{src}\.{_AFFINE}",
        ((f"{block}.mixer.branches.0.affinity.qk.{g}", "qk"), (f"{block}.mixer.proj_in.0.{g}", "v")),
    )


# --- timm ------------------------------------------------------------------------------------
_TIMM_MLP = rule(rf"blocks\.(\d+)\.mlp_channels\.fc(1|2)\.{_AFFINE}", _B0 + ".mlp.fc{g2}.{g3}")
_TIMM_STEM = rule(rf"stem\.proj\.{_AFFINE}", "stages.0.embed.proj.{g1}")

TIMM_MIXER = Format(
    name="timm_mixer",
    source="huggingface/pytorch-image-models timm/models/mlp_mixer.py (MlpMixer, MixerBlock)",
    models=("mixer_*",),
    signature=(r"^stem\.proj\.weight$", r"\.mlp_tokens\.fc1\.weight$"),
    rules=(
        _TIMM_STEM,
        rule(rf"blocks\.(\d+)\.norm(1|2)\.{_AFFINE}", _B0 + ".norm{g2}.{g3}"),
        # token MLP fc1 (D_S, N) and fc2 (N, D_S): our serial token_mlp branches 0 and 1
        rule(
            rf"blocks\.(\d+)\.mlp_tokens\.fc(1|2)\.{_AFFINE}",
            _B0 + ".mixer.branches.{g2-1}.affinity.{g3}",
            "reshape",
        ),
        _TIMM_MLP,
        *_isotropic_head(),
    ),
)

TIMM_RESMLP = Format(
    name="timm_resmlp",
    source="huggingface/pytorch-image-models timm/models/mlp_mixer.py (MlpMixer, ResBlock, Affine)",
    models=("resmlp_*",),
    signature=(r"^stem\.proj\.weight$", r"\.linear_tokens\.weight$"),
    rules=(
        _TIMM_STEM,
        rule(r"blocks\.(\d+)\.norm(1|2)\.(alpha|beta)", _B0 + ".norm{g2}.{g3}", "reshape"),
        rule(rf"blocks\.(\d+)\.linear_tokens\.{_AFFINE}", _B0 + ".mixer.branches.0.affinity.{g2}", "reshape"),
        rule(r"blocks\.(\d+)\.ls(1|2)", _B0 + ".ls{g2}.gamma"),
        _TIMM_MLP,
        *_isotropic_head(_LN_OR_AFFINE),
    ),
)

TIMM_VIT = Format(
    name="timm_vit",
    source="huggingface/pytorch-image-models timm/models/vision_transformer.py (VisionTransformer)",
    models=("deit_s",),
    signature=(r"^cls_token$", r"^pos_embed$", r"^blocks\.0\.attn\.qkv\.weight$"),
    rules=(
        rule(rf"patch_embed\.proj\.{_AFFINE}", "stages.0.embed.proj.{g1}"),
        rule(r"cls_token", "stages.0.tokens.cls_token", "reshape"),
        rule(r"pos_embed", "stages.0.tokens.pos_embed", "tokens_last"),
        rule(rf"blocks\.(\d+)\.norm(1|2)\.{_AFFINE}", _B0 + ".norm{g2}.{g3}"),
        _qkv(r"blocks\.(\d+)\.attn\.qkv", _B0),
        rule(rf"blocks\.(\d+)\.attn\.proj\.{_AFFINE}", _B0 + ".mixer.proj_out.1.{g2}", "reshape"),
        rule(rf"blocks\.(\d+)\.mlp\.fc(1|2)\.{_AFFINE}", _B0 + ".mlp.fc{g2}.{g3}"),
        *_isotropic_head(),
    ),
)

# --- Swin (timm >= 0.9 and Microsoft's original / timm < 0.9) -----------------------------------
_SB = "stages.{g1}.blocks.{g2}"  # stage g1, block g2


def _swin_blocks() -> tuple[Rule, ...]:
    pre = r"layers\.(\d+)\.blocks\.(\d+)"
    return (
        rule(rf"{pre}\.norm(1|2)\.{_AFFINE}", _SB + ".norm{g3}.{g4}"),
        _qkv(rf"{pre}\.attn\.qkv", _SB),
        rule(rf"{pre}\.attn\.proj\.{_AFFINE}", _SB + ".mixer.proj_out.1.{g3}", "reshape"),
        rule(rf"{pre}\.attn\.relative_position_bias_table", _SB + ".mixer.branches.0.affinity.rel_pos_table"),
        # recomputed from the window size and the map: not weights
        rule(rf"{pre}\.attn\.relative_position_index", None),
        rule(rf"{pre}\.attn_mask", None),
        rule(rf"{pre}\.mlp\.fc(1|2)\.{_AFFINE}", _SB + ".mlp.fc{g3}.{g4}"),
        rule(rf"patch_embed\.(proj|norm)\.{_AFFINE}", "stages.0.embed.{g1}.{g2}"),
        rule(rf"norm\.{_AFFINE}", "head_norm.{g1}"),
    )


def _merging(stage: str) -> tuple[Rule, ...]:
    """Patch merging of ``layers.N.downsample`` into our stage ``stage``'s embedding."""
    return (
        rule(
            rf"layers\.(\d+)\.downsample\.norm\.{_AFFINE}", f"stages.{stage}.embed.norm.{{g2}}", "merge_order"
        ),
        rule(
            r"layers\.(\d+)\.downsample\.reduction\.weight",
            f"stages.{stage}.embed.reduction.weight",
            "merge_order",
        ),
    )


TIMM_SWIN = Format(
    name="timm_swin",
    source="huggingface/pytorch-image-models timm/models/swin_transformer.py (>= 0.9: merging opens a stage)",
    models=("swin_t",),
    signature=(r"\.relative_position_bias_table$", r"^layers\.1\.downsample\.reduction\.weight$"),
    absent=(r"^layers\.0\.downsample\.",),
    rules=(*_swin_blocks(), *_merging("{g1}"), rule(rf"head\.fc\.{_AFFINE}", "head.{g1}")),
)

SWIN_MSFT = Format(
    name="swin_msft",
    source="microsoft/Swin-Transformer models/swin_transformer.py (and timm < 0.9: merging ends a stage)",
    models=("swin_t",),
    signature=(r"\.relative_position_bias_table$", r"^layers\.0\.downsample\.reduction\.weight$"),
    rules=(*_swin_blocks(), *_merging("{g1+1}"), rule(rf"head\.{_AFFINE}", "head.{g1}")),
)

# --- AS-MLP (svip-lab/AS-MLP) ----------------------------------------------------------------
_AS = r"layers\.(\d+)\.blocks\.(\d+)\.axial_shift"
AS_MLP = Format(
    name="as_mlp",
    source="svip-lab/AS-MLP models/as_mlp.py (AS_MLP, AxialShiftedBlock, AxialShift, PatchMerging)",
    models=("as_mlp_*",),
    signature=(r"\.axial_shift\.conv1\.weight$",),
    rules=(
        rule(rf"patch_embed\.(proj|norm)\.{_AFFINE}", "stages.0.embed.{g1}.{g2}"),
        *_merging("{g1+1}"),
        rule(rf"layers\.(\d+)\.blocks\.(\d+)\.norm(1|2)\.{_AFFINE}", _SB + ".norm{g3}.{g4}"),
        # conv1 -> norm1 -> GELU is V; conv2_1 follows the shift along W, conv2_2 along H
        rule(rf"{_AS}\.conv1\.{_AFFINE}", _SB + ".mixer.proj_in.0.{g3}"),
        rule(rf"{_AS}\.norm1\.{_AFFINE}", _SB + ".mixer.proj_in.1.{g3}"),
        rule(rf"{_AS}\.conv2_(1|2)\.{_AFFINE}", _SB + ".mixer.branches.{g3-1}.proj.{g4}"),
        rule(rf"{_AS}\.norm2\.{_AFFINE}", _SB + ".mixer.proj_out.0.{g3}"),
        rule(rf"{_AS}\.conv3\.{_AFFINE}", _SB + ".mixer.proj_out.1.{g3}"),
        rule(rf"layers\.(\d+)\.blocks\.(\d+)\.mlp\.fc(1|2)\.{_AFFINE}", _SB + ".mlp.fc{g3}.{g4}", "reshape"),
        rule(rf"norm\.{_AFFINE}", "head_norm.{g1}"),
        rule(rf"head\.{_AFFINE}", "head.{g1}"),
    ),
)

# --- RepMLPNet (DingXiaoH/RepMLP) ------------------------------------------------------------
_RB = r"stages\.(\d+)\.(\d+)"  # stage, unit
_REP = _RB + r"\.repmlp_block"
_REPMLP_RULES = (
    rule(r"conv_embedding\.conv\.weight", "stages.0.embed.0.weight"),
    rule(rf"conv_embedding\.bn\.{_BN}", "stages.0.embed.1.{g1}"),
    rule(r"embeds\.(\d+)\.conv\.weight", "stages.{g1+1}.embed.0.weight"),
    rule(rf"embeds\.(\d+)\.bn\.{_BN}", "stages.{g1+1}.embed.1.{g2}"),
    rule(rf"{_RB}\.prebn(1|2)\.{_BN}", _SB + ".norm{g3}.{g4}"),
    rule(rf"{_REP}\.gp\.fc(1|2)\.{_AFFINE}", _SB + ".gate.fc{g3}.{g4}"),
    # fc3: a grouped 1×1 conv (S·hw, hw, 1, 1), group s = share set s: our (S, hw, hw)
    rule(rf"{_REP}\.fc3\.{_AFFINE}", _SB + ".mixer.branches.0.affinity.{g3}", "reshape"),
    rule(rf"{_REP}\.fc3_bn\.{_BN}", _SB + ".mixer.branches.0.norm.{g3}"),
    # the local conv branches in our order of kernels (1, 3): branches 1 and 2
    rule(rf"{_REP}\.repconv1\.conv\.weight", _SB + ".mixer.branches.1.affinity.weight"),
    rule(rf"{_REP}\.repconv1\.bn\.{_BN}", _SB + ".mixer.branches.1.norm.{g3}"),
    rule(rf"{_REP}\.repconv3\.conv\.weight", _SB + ".mixer.branches.2.affinity.weight"),
    rule(rf"{_REP}\.repconv3\.bn\.{_BN}", _SB + ".mixer.branches.2.norm.{g3}"),
    rule(rf"{_RB}\.ffn_block\.ffn_fc(1|2)\.conv\.weight", _SB + ".mlp.fc{g3}.weight"),
    rule(rf"{_RB}\.ffn_block\.ffn_fc(1|2)\.bn\.{_BN}", _SB + ".mlp.norm{g3}.{g4}"),
    rule(rf"head_norm\.{_BN}", "head_norm.{g1}"),
    rule(rf"head\.{_AFFINE}", "head.{g1}"),
)


def _repmlp_deploy(cfg: Any, source: Mapping[str, Tensor]) -> dict[str, Any]:
    """RepMLPNet's deployed form (``locality_injection``): each stage's FC alone, with a bias."""
    from affinity.models.mixers import repmlp_mixer

    shares = [int(s.mixer.branches[0].params.get("share", 1)) for s in cfg.stages]
    return {"mixer": tuple(repmlp_mixer(share=s, deploy=True) for s in shares)}


REPMLPNET = Format(
    name="repmlpnet",
    source="DingXiaoH/RepMLP repmlpnet.py (RepMLPNet, training form: fc3 + fc3_bn + repconv branches)",
    models=("repmlpnet_*",),
    signature=(r"^conv_embedding\.conv\.weight$", r"\.repmlp_block\.fc3_bn\."),
    rules=_REPMLP_RULES,
)

REPMLPNET_DEPLOY = Format(
    name="repmlpnet_deploy",
    source="DingXiaoH/RepMLP repmlpnet.py (RepMLPNet after locality_injection: fc3 with a bias)",
    models=("repmlpnet_*",),
    signature=(r"^conv_embedding\.conv\.weight$", r"\.repmlp_block\.fc3\.bias$"),
    absent=(r"\.repmlp_block\.fc3_bn\.", r"\.repmlp_block\.repconv"),
    rules=_REPMLP_RULES,
    adapt=_repmlp_deploy,
)

# --- Container-Light (allenai/container) -----------------------------------------------------
_CB = "stages.{g1-1}.blocks.{g2}"


def _mlp_ratios(fc1_key: str) -> Any:
    """An ``adapt`` reading the channel-MLP ratios the weights were trained with from each
    stage's first ``fc1`` (``fc1_key`` formatted with the 0-based stage ``i`` and 1-based
    ``j``): Container's released 8-8-4-4, a search trial's own ratios."""

    def adapt(cfg: Any, source: Mapping[str, Tensor]) -> dict[str, Any]:
        ratios = []
        for i, s in enumerate(cfg.stages):
            fc1 = source.get(fc1_key.format(i=i, j=i + 1))
            ratios.append(s.channel_mlp_ratio if fc1 is None else fc1.shape[0] / s.dim)
        if ratios == [s.channel_mlp_ratio for s in cfg.stages]:
            return {}
        return {"channel_mlp_ratio": tuple(ratios)}

    return adapt


CONTAINER = Format(
    name="container",
    source="allenai/container models.py (container_v1_light: CBlock in stages 1-3, MixBlock in 4)",
    models=("container_light",),
    signature=(r"^patch_embed1\.proj\.weight$", r"^blocks4\.0\.sa_weight$"),
    rules=(
        rule(rf"patch_embed(\d)\.(proj|norm)\.{_AFFINE}", "stages.{g1-1}.embed.{g2}.{g3}"),
        rule(rf"blocks(\d)\.(\d+)\.pos_embed\.{_AFFINE}", _CB + ".pos_mixer.branches.0.affinity.{g3}"),
        rule(rf"blocks(\d)\.(\d+)\.norm(1|2)\.{_BN}", _CB + ".norm{g3}.{g4}"),
        # MixBlock: conv1 makes q | k | v (3C); attention on q, k; the 5×5 conv and V on v
        _qkv(r"blocks(4)\.(\d+)\.conv1", _CB),
        rule(rf"blocks(4)\.(\d+)\.conv\.{_AFFINE}", _CB + ".mixer.branches.1.affinity.{g3}"),
        rule(r"blocks(4)\.(\d+)\.sa_weight", _CB + ".mixer.w"),
        # CBlock: conv1 (V) -> attn (the 5×5 depthwise conv) -> conv2
        rule(rf"blocks([123])\.(\d+)\.conv1\.{_AFFINE}", _CB + ".mixer.proj_in.0.{g3}"),
        rule(rf"blocks([123])\.(\d+)\.attn\.{_AFFINE}", _CB + ".mixer.branches.0.affinity.{g3}"),
        rule(rf"blocks(\d)\.(\d+)\.conv2\.{_AFFINE}", _CB + ".mixer.proj_out.1.{g3}"),
        rule(rf"blocks(\d)\.(\d+)\.mlp\.fc(1|2)\.{_AFFINE}", _CB + ".mlp.fc{g3}.{g4}", "reshape"),
        rule(rf"norm\.{_BN}", "head_norm.{g1}"),
        rule(rf"head\.{_AFFINE}", "head.{g1}"),
    ),
    adapt=_mlp_ratios("blocks{j}.0.mlp.fc1.weight"),
)

# --- affinity's own ----------------------------------------------------------------------------
AFFINITY = Format(
    name="affinity",
    source="affinity's own state dicts (AffinityNet.state_dict(), `affinity train` checkpoints)",
    models=("*",),
    signature=(r"^stages\.0\.embed\.",),
    rules=(rule(r"(.+)", "{g1}"),),
    adapt=_mlp_ratios("stages.{i}.blocks.0.mlp.fc1.weight"),
)

#: every layout, in the order ``detect`` reports them
FORMATS: list[Format] = [
    AFFINITY,
    TIMM_MIXER,
    TIMM_RESMLP,
    TIMM_VIT,
    TIMM_SWIN,
    SWIN_MSFT,
    AS_MLP,
    REPMLPNET,
    REPMLPNET_DEPLOY,
    CONTAINER,
]
