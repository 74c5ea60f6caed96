"""timm's state dicts for the timm-backed variants (Mixer, ResMLP, DeiT, Swin) load where
timm's forward uses each tensor.

Without timm: the layouts written in layouts.py are converted and checked tensor by tensor
against what timm's forward computes from them (one attention row from the raw fused qkv,
the position embedding by index, the token-MLP matrices, the patch-merge concatenation).
With timm installed (the ``timm`` test extra), the written layouts are also compared with
timm's own state dicts and the logits end to end.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from affinity.models import create_model
from affinity.models.mixers import mixer_token_mlp
from tests.checkpoints import layouts as L
from tests.checkpoints.timm_import import import_timm

timm = import_timm()
needs_timm = pytest.mark.skipif(timm is None, reason="timm is not installed (pip install 'affinity[timm]')")

# small configs of each family: (our registered name, our overrides, layout, timm constructor kwargs)
_MIXER = {"c": 16, "n": 16, "ds": 8, "dc": 64, "p": 8, "depth": 2, "classes": 10}
_RESMLP = {"c": 16, "n": 16, "p": 8, "depth": 2, "classes": 10}
_VIT = {"c": 24, "n": 16, "p": 8, "depth": 2, "classes": 10}
_SWIN = {
    "dims": (12, 24, 48, 96),
    "depths": (2, 2, 2, 2),
    "heads": (1, 2, 2, 4),
    "window": 4,
    "img": 64,
    "classes": 10,
}

CASES = {
    "mixer": (
        "mixer_s16",
        {
            "img_size": 32,
            "patch_size": 8,
            "dims": 16,
            "depths": 2,
            "channel_mlp_ratio": 4.0,
            "mixer": mixer_token_mlp(hidden=8),
        },
        L.timm_mixer(**_MIXER),
        "timm_mixer",
    ),
    "resmlp": (
        "resmlp_s12",
        {"img_size": 32, "patch_size": 8, "dims": 16, "depths": 2},
        L.timm_resmlp(**_RESMLP),
        "timm_resmlp",
    ),
    "deit": (
        "deit_s",
        {"img_size": 32, "patch_size": 8, "dims": 24, "depths": 2, "heads": 3},
        L.timm_vit(**_VIT),
        "timm_vit",
    ),
    "swin": (
        "swin_t",
        {
            "img_size": 64,
            "dims": _SWIN["dims"],
            "depths": _SWIN["depths"],
            "heads": _SWIN["heads"],
            "window_size": 4,
            "shift_size": 2,
        },
        L.timm_swin(**_SWIN),
        "timm_swin",
    ),
}


def _load(tmp_path, case: str, state=None):
    name, kw, layout, fmt = CASES[case]
    state = L.fill(layout) if state is None else state
    path = tmp_path / f"{case}.pth"
    torch.save(state, path)
    model = create_model(name, checkpoint_path=path, **kw).eval()
    assert model.load_report.format == fmt and model.load_report.ok, model.load_report.problem()
    return model, state


def test_vit_attention_row_from_the_raw_fused_qkv(tmp_path) -> None:
    """qkv rows [0, C) are q, [C, 2C) k, [2C, 3C) v, each head-major (timm's reshape to
    (B, N, 3, heads, d)): one softmax row by hand equals our affinity's row, and V our
    mixer's input projection."""
    model, w = _load(tmp_path, "deit")
    c, heads = 24, 3
    d = c // heads
    mixer = model.stages[0].blocks[1].mixer
    x = torch.randn(1, c, 1, 17)  # the block's normalised tokens, class token first
    tokens = x.flatten(2)[0].T  # (N, C)
    qkv = tokens @ w["blocks.1.attn.qkv.weight"].T + w["blocks.1.attn.qkv.bias"]
    head, row = 1, 5
    q = qkv[row, head * d : (head + 1) * d]
    k = qkv[:, c + head * d : c + (head + 1) * d]
    with torch.no_grad():
        got = mixer.branches[0].affinity.materialize(x)[0, head * d, row]
        v = mixer.proj_in(x).flatten(2)[0].T
    torch.testing.assert_close(got, torch.softmax(k @ q * d**-0.5, 0))
    torch.testing.assert_close(v, qkv[:, 2 * c :])


def test_vit_position_embedding_and_class_token_by_index(tmp_path) -> None:
    model, w = _load(tmp_path, "deit")
    tokens = model.stages[0].tokens
    pos = w["pos_embed"]  # (1, 1+N, C)
    for n, ch in [(0, 0), (0, 23), (1, 5), (16, 7), (9, 12)]:
        assert tokens.pos_embed[0, ch, 0, n] == pos[0, n, ch]
    assert torch.equal(tokens.cls_token.flatten(), w["cls_token"].flatten())


def test_mixer_token_mlp_matrices_and_one_mixed_token(tmp_path) -> None:
    """timm's mlp_tokens acts on x.transpose(1, 2): fc1 (D_S, N) reads the tokens of one
    channel; our two token_mlp branches hold the same matrices."""
    model, w = _load(tmp_path, "mixer")
    mixer = model.stages[0].blocks[0].mixer
    v = torch.randn(1, 16, 4, 4)
    with torch.no_grad():
        ours = mixer(v)  # (1, C, 4, 4)
    t = v.flatten(2)  # (1, C, N): per channel, the N tokens
    hidden = F.gelu(t @ w["blocks.0.mlp_tokens.fc1.weight"].T + w["blocks.0.mlp_tokens.fc1.bias"])
    ref = hidden @ w["blocks.0.mlp_tokens.fc2.weight"].T + w["blocks.0.mlp_tokens.fc2.bias"]
    torch.testing.assert_close(ours.flatten(2), ref)


def test_resmlp_affine_and_layer_scale_land_per_channel(tmp_path) -> None:
    model, w = _load(tmp_path, "resmlp")
    block = model.stages[0].blocks[1]
    x = torch.randn(1, 16, 4, 4)
    ref = x * w["blocks.1.norm1.alpha"].reshape(16, 1, 1) + w["blocks.1.norm1.beta"].reshape(16, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(block.norm1(x), ref)
    assert torch.equal(block.ls2.gamma, w["blocks.1.ls2"])
    torch.testing.assert_close(
        block.mixer.branches[0].affinity.materialize(x)[0, 0], w["blocks.1.linear_tokens.weight"]
    )


def test_swin_patch_merge_is_timms_concatenation(tmp_path) -> None:
    """timm's merging (reshape to (H/2, 2, W/2, 2), permute, flatten) orders the 4C channels
    as the original cat([x0, x1, x2, x3]): LayerNorm over 4C, then the (2C, 4C) reduction."""
    model, w = _load(tmp_path, "swin")
    x = torch.randn(2, 12, 16, 16)
    merged = L.merge_2x2(x).permute(0, 2, 3, 1)  # (B, H/2, W/2, 4C)
    normed = F.layer_norm(
        merged, (48,), w["layers.1.downsample.norm.weight"], w["layers.1.downsample.norm.bias"]
    )
    ref = (normed @ w["layers.1.downsample.reduction.weight"].T).permute(0, 3, 1, 2)
    with torch.no_grad():
        torch.testing.assert_close(model.stages[1].embed(x), ref)


def test_swin_window_attention_row_with_relative_bias(tmp_path) -> None:
    """In an unshifted block, token (r, c)'s row: softmax over its window of q·k/√d plus the
    table entry at ((dr + w−1)·(2w−1) + dc + w−1), by hand from the raw tensors."""
    model, w = _load(tmp_path, "swin")
    attn = model.stages[0].blocks[0].mixer.branches[0].affinity
    x = torch.randn(1, 12, 16, 16)
    ws, p = 4, "layers.0.blocks.0.attn"
    tokens = x.flatten(2)[0].T  # (256, C), row-major
    qkv = tokens @ w[f"{p}.qkv.weight"].T + w[f"{p}.qkv.bias"]
    r, c = 6, 9  # window rows 4..7, cols 8..11
    idx = [(i, j) for i in range(4, 8) for j in range(8, 12)]
    q = qkv[r * 16 + c, :12]
    keys = torch.stack([qkv[i * 16 + j, 12:24] for i, j in idx])
    table = w[f"{p}.relative_position_bias_table"][:, 0]
    bias = torch.stack([table[(r - i + ws - 1) * (2 * ws - 1) + (c - j + ws - 1)] for i, j in idx])
    expected = torch.softmax(keys @ q / 12**0.5 + bias, 0)
    with torch.no_grad():
        row = attn.materialize(x)[0, 0, r * 16 + c]
    torch.testing.assert_close(row[[i * 16 + j for i, j in idx]], expected)
    assert float(row.sum()) == pytest.approx(1.0, abs=1e-6)


def test_swin_microsoft_layout_loads_the_same_weights(tmp_path) -> None:
    """Microsoft's / timm < 0.9 layout (merging at the end of the previous stage, ``head``,
    persistent index and mask buffers) gives the same model as timm's."""
    model, state = _load(tmp_path, "swin")
    msft = L.swin_msft_from_timm(state, window=4)
    path = tmp_path / "msft.pth"
    torch.save({"model": msft}, path)
    name, kw, _, _ = CASES["swin"]
    other = create_model(name, checkpoint_path=path, **kw).eval()
    assert other.load_report.format == "swin_msft" and other.load_report.ok
    assert other.load_report.dropped  # the buffers, dropped on purpose
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(other(x), model(x))


@needs_timm
@pytest.mark.parametrize("case", list(CASES))
def test_written_layout_is_timms(case: str) -> None:
    """The layouts written in layouts.py are timm's own (names and shapes)."""
    ref = _timm_model(case)
    assert {k: tuple(v.shape) for k, v in ref.state_dict().items()} == CASES[case][2]


@needs_timm
@pytest.mark.parametrize("case", list(CASES))
def test_logits_equal_timms(tmp_path, case: str) -> None:
    ref = _timm_model(case).eval()
    state = L.fill(CASES[case][2], seed=3)
    ref.load_state_dict(state)
    model, _ = _load(tmp_path, case, state)
    size = CASES[case][1]["img_size"]
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        torch.testing.assert_close(model(x), ref(x), rtol=1e-4, atol=1e-5)


def _timm_model(case: str):
    from timm.models.mlp_mixer import Affine, MlpMixer, ResBlock
    from timm.models.swin_transformer import SwinTransformer
    from timm.models.vision_transformer import VisionTransformer

    if case == "mixer":
        return MlpMixer(
            num_classes=10, img_size=32, patch_size=8, num_blocks=2, embed_dim=16, mlp_ratio=(0.5, 4.0)
        )
    if case == "resmlp":
        return MlpMixer(
            num_classes=10, img_size=32, patch_size=8, num_blocks=2, embed_dim=16, mlp_ratio=4,
            block_layer=ResBlock, norm_layer=Affine,
        )  # fmt: skip
    if case == "deit":
        return VisionTransformer(
            img_size=32, patch_size=8, num_classes=10, embed_dim=24, depth=2, num_heads=3
        )
    return SwinTransformer(
        img_size=64,
        patch_size=4,
        num_classes=10,
        embed_dim=12,
        depths=(2, 2, 2, 2),
        num_heads=(1, 2, 2, 4),
        window_size=4,
    )
