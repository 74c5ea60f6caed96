"""RepMLPNet's structural re-parameterisation: same outputs, conv branches and BN folded."""

from __future__ import annotations

import torch
from torch import nn

from affinity.models import create_model
from affinity.models.reparam import conv_as_matrix


def _randomise_bn(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)  # type: ignore[union-attr]
            m.running_var.uniform_(0.5, 2.0)  # type: ignore[union-attr]
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.5, 0.5)


def test_reparameterize_keeps_outputs() -> None:
    model = create_model("repmlpnet_t224", num_classes=10, img_size=64, in_chans=1, depth=1)
    _randomise_bn(model)
    model.eval()
    x = torch.randn(3, 1, 64, 64)
    with torch.no_grad():
        before = model(x)
    kinds = [b.affinity.name for b in model.stages[0].blocks[0].mixer.branches]
    assert kinds == ["token_mlp", "dwconv", "dwconv"]
    params_before = sum(p.numel() for p in model.parameters())
    model.reparameterize()
    with torch.no_grad():
        after = model(x)
    assert torch.allclose(before, after, atol=1e-4), (before - after).abs().max()
    for stage in model.stages:
        for block in stage.blocks:
            assert [b.affinity.name for b in block.mixer.branches] == ["token_mlp"]
            assert not any(isinstance(m, nn.BatchNorm2d) for m in block.mlp.modules())
    assert all(len(s.mixer.branches) == 1 for s in model.cfg.stages)
    assert sum(p.numel() for p in model.parameters()) < params_before


def test_conv_on_identity_is_the_conv_matrix() -> None:
    """Column j of the folded matrix is the conv's response to token j, as materialize says."""
    from affinity.ops.conv import DepthwiseConv

    conv = DepthwiseConv(dim=4, kernel_size=3, share=2, share_layout="interleaved")
    mats = conv_as_matrix(conv, 5, 6)  # (S, N, N)
    full = conv.materialize(torch.zeros(1, 4, 5, 6))[0]  # (C, N, N)
    assert torch.allclose(mats[0], full[0]) and torch.allclose(mats[1], full[1])
    assert torch.allclose(mats[0], full[2])  # interleaved: channel 2 uses set 0
