"""The authors' released layouts (AS-MLP, RepMLPNet training and deployed, Container-Light)
load into the registered models and give the source's logits.

Each reference layout is written out in layouts.py (names and shapes as the authors' code
makes them, small configs) and its forward re-derived there as plain tensor functions, so
every tensor is checked where the source uses it: a wrong rename, a swapped W/H branch, a
wrong patch-merge order, share-set layout or q|k|v split changes the logits.
"""

from __future__ import annotations

import pytest
import torch

from affinity.checkpoints import read_checkpoint
from affinity.models import create_model
from tests.checkpoints import layouts as L

_X = torch.Generator().manual_seed(1)


def _save(tmp_path, state, name="ref.pth"):
    path = tmp_path / name
    torch.save({"model": state}, path)  # the authors' training scripts wrap the weights
    return path


def _image(size: int) -> torch.Tensor:
    return torch.randn(2, 3, size, size, generator=_X)


def _close(ours: torch.Tensor, ref: torch.Tensor) -> None:
    assert ours.shape == ref.shape
    torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-5)


def test_as_mlp_released_layout_gives_the_sources_logits(tmp_path) -> None:
    dims, depths = (8, 16, 16, 32), (1, 2, 1, 1)
    state = L.fill(L.as_mlp(dims=dims, depths=depths, classes=7))
    model = create_model(
        "as_mlp_t", checkpoint_path=_save(tmp_path, state), img_size=32, dims=dims, depths=depths
    )
    assert model.load_report.format == "as_mlp" and model.load_report.ok
    assert model.num_classes == 7  # from the checkpoint's classifier
    x = _image(32)
    with torch.no_grad():
        _close(model.eval()(x), L.as_mlp_forward(state, x, depths))


def test_as_mlp_branches_follow_the_sources_axes(tmp_path) -> None:
    """conv2_1 follows the shift along W (dim 3), conv2_2 the one along H: swapped, the
    logits differ (so the test above pins the axes, not only the names)."""
    dims, depths = (8, 16, 16, 32), (1, 1, 1, 1)
    state = L.fill(L.as_mlp(dims=dims, depths=depths, classes=3))
    swapped = dict(state)
    for suffix in ("weight", "bias"):
        a, b = (
            f"layers.0.blocks.0.axial_shift.conv2_1.{suffix}",
            f"layers.0.blocks.0.axial_shift.conv2_2.{suffix}",
        )
        swapped[a], swapped[b] = state[b], state[a]
    model = create_model(
        "as_mlp_t", checkpoint_path=_save(tmp_path, swapped), img_size=32, dims=dims, depths=depths
    )
    x = _image(32)
    with torch.no_grad():
        assert not torch.allclose(model.eval()(x), L.as_mlp_forward(state, x, depths), atol=1e-4)


def test_patch_merge_order_is_the_sources_concatenation(tmp_path) -> None:
    """Our merging (pixel_unshuffle, norm, 1×1) on the converted tensors equals the source's
    ``cat([x0, x1, x2, x3])`` -> GroupNorm -> reduction on the raw ones."""
    dims, depths = (8, 16, 16, 32), (1, 1, 1, 1)
    state = L.fill(L.as_mlp(dims=dims, depths=depths, classes=3))
    model = create_model(
        "as_mlp_t", checkpoint_path=_save(tmp_path, state), img_size=32, dims=dims, depths=depths
    )
    x = torch.randn(2, 8, 8, 8, generator=_X)
    merged = L.merge_2x2(x)
    ref = L._conv1(L._gn(merged, state, "layers.0.downsample.norm"), state, "layers.0.downsample.reduction")
    with torch.no_grad():
        _close(model.stages[1].embed(x), ref)


@pytest.mark.parametrize("deploy", [False, True], ids=["training", "deployed"])
def test_repmlpnet_released_layout_gives_the_sources_logits(tmp_path, deploy: bool) -> None:
    dims, depths, shares = (8, 16, 32, 32), (1, 1, 2, 1), (1, 2, 4, 8)
    sides = (8, 4, 2, 1)
    state = L.fill(
        L.repmlpnet(dims=dims, depths=depths, sides=sides, shares=shares, classes=5, deploy=deploy)
    )
    path = _save(tmp_path, state)
    model = create_model(
        "repmlpnet_t224", checkpoint_path=path, img_size=32, dims=dims, depths=depths, share=shares
    )
    assert model.load_report.format == ("repmlpnet_deploy" if deploy else "repmlpnet")
    assert model.load_report.ok
    x = _image(32)
    with torch.no_grad():
        ours = model.eval()(x)
        _close(ours, L.repmlpnet_forward(state, x, depths, shares, deploy=deploy))
    if deploy:  # the deployed form is the FC alone, with its bias
        mixer = model.stages[2].blocks[0].mixer
        assert len(mixer.branches) == 1
        fc = mixer.branches[0].affinity
        raw = state["stages.2.0.repmlp_block.fc3.weight"]  # (S·hw, hw, 1, 1), group s = rows [s·hw, (s+1)·hw)
        torch.testing.assert_close(fc.weight[3], raw[3 * 4 : 4 * 4, :, 0, 0])
        torch.testing.assert_close(fc.bias[1], state["stages.2.0.repmlp_block.fc3.bias"][4:8])
    else:  # our reparameterisation of the loaded training form gives the same logits
        with torch.no_grad():
            _close(model.reparameterize()(x), ours)


def test_container_light_released_layout_gives_the_sources_logits(tmp_path) -> None:
    dims, depths, ratios, patches = (8, 16, 16, 32), (1, 1, 2, 2), (8, 8, 4, 4), (4, 2, 2, 2)
    state = L.fill(L.container_light(dims=dims, depths=depths, ratios=ratios, patches=patches, classes=6))
    path = _save(tmp_path, state)
    # the registered container_light has the paper's MLP ratio 4; the released 8-8-4-4 is read
    # from the weights
    model = create_model(
        "container_light", checkpoint_path=path, img_size=64, dims=dims, depths=depths, heads=4
    )
    assert model.load_report.format == "container" and model.load_report.ok
    assert [s.channel_mlp_ratio for s in model.cfg.stages] == [8, 8, 4, 4]
    x = _image(64)
    with torch.no_grad():
        _close(model.eval()(x), L.container_forward(state, x, depths, patches, heads=4))


def test_container_attention_row_from_the_raw_qkv(tmp_path) -> None:
    """One attention row by hand from the raw conv1 (q | k | v) equals our affinity's row."""
    dims, depths, ratios, patches = (8, 16, 16, 32), (1, 1, 1, 1), (4, 4, 4, 4), (4, 2, 2, 2)
    state = L.fill(L.container_light(dims=dims, depths=depths, ratios=ratios, patches=patches, classes=6))
    model = create_model(
        "container_light",
        checkpoint_path=_save(tmp_path, state),
        img_size=64,
        dims=dims,
        depths=depths,
        heads=4,
    )
    attn = model.stages[3].blocks[0].mixer.branches[0].affinity
    x = torch.randn(1, 32, 2, 2, generator=_X)  # the mixer input (after norm1)
    w, b = state["blocks4.0.conv1.weight"][:, :, 0, 0], state["blocks4.0.conv1.bias"]
    tokens = x.flatten(2)[0].T  # (N, C)
    qkv = tokens @ w.T + b  # (N, 3C)
    head, d, row = 2, 8, 3
    q = qkv[row, head * d : (head + 1) * d]
    k = qkv[:, 32 + head * d : 32 + (head + 1) * d]
    expected = torch.softmax(k @ q / d**0.5, 0)
    with torch.no_grad():
        got = attn.materialize(x)[0, head * d, row]
    torch.testing.assert_close(got, expected)
    v = model.stages[3].blocks[0].mixer.proj_in(x).flatten(2)[0].T
    torch.testing.assert_close(v.detach(), qkv[:, 64:])


def test_container_checkpoint_reads_its_layout(tmp_path) -> None:
    dims, depths, ratios, patches = (8, 16, 16, 32), (1, 1, 1, 1), (8, 8, 4, 4), (4, 2, 2, 2)
    state = L.fill(L.container_light(dims=dims, depths=depths, ratios=ratios, patches=patches, classes=6))
    raw = read_checkpoint(_save(tmp_path, state))
    assert set(raw.state_dict) == set(state)  # unwrapped from {"model": ...}
