"""RepMLPNet's structural re-parameterisation: same outputs, branch BNs and conv branches folded."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch
from torch import nn

from affinity.models import create_model
from affinity.models.mixers import repmlp_mixer
from affinity.models.reparam import conv_as_matrix, fold_mixer
from affinity.ops import BranchCfg, ContextAggregation
from affinity.ops.mixer import SharedBatchNorm2d


def _randomise_bn(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)  # type: ignore[union-attr]
            m.running_var.uniform_(0.5, 2.0)  # type: ignore[union-attr]
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.5, 0.5)


def _branch_norms(model: nn.Module) -> list[SharedBatchNorm2d]:
    return [m for m in model.modules() if isinstance(m, SharedBatchNorm2d)]


def test_reparameterize_keeps_outputs() -> None:
    model = create_model("repmlpnet_t224", num_classes=10, img_size=64, in_chans=1, depth=1)
    x = torch.randn(3, 1, 64, 64)
    model.train()
    with torch.no_grad():
        for _ in range(2):  # real batch statistics in every BN
            model(torch.randn(4, 1, 64, 64))
    _randomise_bn(model)  # and far from the identity
    model.eval()
    mixer = model.stages[1].blocks[0].mixer
    assert [b.affinity.name for b in mixer.branches] == ["token_mlp", "dwconv", "dwconv"]
    assert all(isinstance(b.norm, SharedBatchNorm2d) and b.norm.sets == 4 for b in mixer.branches)
    with torch.no_grad():
        before = model(x)
        # the branch BNs matter: with them reset, the outputs are far off, so a wrong fold shows
        plain = copy.deepcopy(model)
        for bn in _branch_norms(plain):
            bn.reset_parameters()
        assert (plain(x) - before).abs().max() > 1e-2
    params_before = sum(p.numel() for p in model.parameters())
    model.reparameterize()
    with torch.no_grad():
        after = model(x)
    assert torch.allclose(before, after, atol=1e-4), (before - after).abs().max()
    assert not _branch_norms(model)
    for stage in model.stages:
        for block in stage.blocks:
            (branch,) = block.mixer.branches
            assert branch.affinity.name == "token_mlp" and isinstance(branch.norm, nn.Identity)
            assert branch.affinity.bias is not None and branch.affinity.bias.abs().max() > 0
            assert not any(isinstance(m, nn.BatchNorm2d) for m in block.mlp.modules())
    for s in model.cfg.stages:
        (fc,) = s.mixer.branches
        assert fc.norm is None and fc.params["bias"] is True
    assert model.cfg.stages[1].mixer == repmlp_mixer(share=4, deploy=True)
    assert sum(p.numel() for p in model.parameters()) < params_before


@pytest.mark.parametrize(("layout", "conv_bias"), [("interleaved", False), ("consecutive", True)])
def test_fold_mixer_is_exact_per_share_set(layout: str, conv_bias: bool) -> None:
    """In float64 the deploy FC gives the train-time mixer's eval outputs to rounding."""
    cfg = repmlp_mixer(share=2)
    branches = tuple(
        dataclasses.replace(
            b,
            params={
                **b.params,
                "share_layout": layout,
                **({"bias": conv_bias} if b.affinity == "dwconv" else {}),
            },
        )
        for b in cfg.branches
    )
    cfg = dataclasses.replace(cfg, branches=branches)
    mixer = ContextAggregation.from_cfg(cfg, dim=8, hw=(5, 6)).double()
    _randomise_bn(mixer)
    mixer.eval()
    x = torch.randn(3, 8, 5, 6, dtype=torch.float64)
    with torch.no_grad():
        before = mixer(x)
        assert fold_mixer(mixer)
        after = mixer(x)
    torch.testing.assert_close(after, before, atol=1e-10, rtol=0)
    (branch,) = mixer.branches
    assert isinstance(branch.norm, nn.Identity) and branch.affinity.bias is not None
    assert mixer.cfg.branches == (BranchCfg("token_mlp", {"share": 2, "share_layout": layout, "bias": True}),)


def test_fold_mixer_leaves_a_per_channel_branch_norm() -> None:
    """BatchNorm over C cannot fold into S < C shared matrices: the mixer stays as it is."""
    cfg = repmlp_mixer(share=2)
    cfg = dataclasses.replace(
        cfg, branches=tuple(dataclasses.replace(b, norm="batchnorm") for b in cfg.branches)
    )
    mixer = ContextAggregation.from_cfg(cfg, dim=8, hw=(4, 4)).eval()
    assert not fold_mixer(mixer)
    assert len(mixer.branches) == 3


def test_conv_on_identity_is_the_conv_matrix() -> None:
    """Column j of the folded matrix is the conv's response to token j, as materialize says."""
    from affinity.ops.conv import DepthwiseConv

    conv = DepthwiseConv(dim=4, kernel_size=3, share=2, share_layout="interleaved")
    mats = conv_as_matrix(conv, 5, 6)  # (S, N, N)
    full = conv.materialize(torch.zeros(1, 4, 5, 6))[0]  # (C, N, N)
    assert torch.allclose(mats[0], full[0]) and torch.allclose(mats[1], full[1])
    assert torch.allclose(mats[0], full[2])  # interleaved: channel 2 uses set 0
