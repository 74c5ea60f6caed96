"""The operators beyond the seeds against their authors' code (tests/ops/released.py).

The conformance suite proves fast path == materialised matrix; these prove the fast path (and
the mixer built from the zoo's preset) computes what the released models compute.
"""

from __future__ import annotations

from typing import cast

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from affinity.models.mixers import cyclemlp_mixer, gmlp_mixer, vip_mixer
from affinity.ops import ContextAggregation, create_affinity
from affinity.ops.fourier import GlobalFilter
from affinity.ops.gating import SpatialGating
from tests.ops.released import (
    circular_depthwise_conv,
    cyclemlp_cycle_fc,
    gfnet_global_filter,
    gmlp_spatial_gating,
    poolformer_pooling,
    split_attention,
    vip_permute,
)

D = torch.float64


def _randomise(module: nn.Module) -> None:
    with torch.no_grad():
        for p in module.parameters():
            p.normal_(std=0.5)


def _conv_weight(mixer: ContextAggregation, path: str) -> tuple[torch.Tensor, torch.Tensor | None]:
    conv = cast(nn.Conv2d, mixer.get_submodule(path))
    return conv.weight, conv.bias


@pytest.mark.parametrize(("h", "w"), [(7, 7), (6, 5), (1, 4)])
def test_pooling_is_poolformers_border_normalised_average(h: int, w: int) -> None:
    x = torch.randn(2, 6, h, w, dtype=D)
    aff = create_affinity("pooling", dim=6)
    torch.testing.assert_close(aff(x), poolformer_pooling(x), atol=1e-12, rtol=0)
    # the corner of a 3×3 window inside the map averages 4 tokens (2×2), not 9
    if h >= 2 and w >= 2:
        a = aff.materialize(x)[0, 0]
        assert a[0, 0].item() == pytest.approx(1 / 4 - 1) and a[0, 1].item() == pytest.approx(1 / 4)


@pytest.mark.parametrize(("h", "w"), [(14, 14), (7, 6), (5, 9), (4, 1)])
def test_global_filter_is_gfnets_layer_and_a_circular_conv(h: int, w: int) -> None:
    aff = cast(GlobalFilter, create_affinity("global_filter", dim=5, hw=(h, w)).to(D))
    _randomise(aff)
    x = torch.randn(2, 5, h, w, dtype=D)
    mine = aff(x)
    theirs = gfnet_global_filter(x.permute(0, 2, 3, 1), aff.complex_weight).permute(0, 3, 1, 2)
    torch.testing.assert_close(mine, theirs, atol=1e-12, rtol=0)
    torch.testing.assert_close(mine, circular_depthwise_conv(x, aff.kernel(D)), atol=1e-12, rtol=0)


def test_cycle_shift_offsets_are_cyclemlps() -> None:
    # CycleFC(1×3) reads channel c at x + ((c + 1) mod 3) − 1: offsets 0, +1, −1, 0, ...
    aff = create_affinity("cycle_shift", dim=4, axis="w")
    v = torch.arange(5.0).view(1, 1, 1, 5).repeat(1, 4, 1, 1)
    out = aff(v)[0, :, 0]
    assert out.tolist() == [[0, 1, 2, 3, 4], [1, 2, 3, 4, 0], [0, 0, 1, 2, 3], [0, 1, 2, 3, 4]]


def test_cyclemlp_mixer_is_the_released_module() -> None:
    c, h, w = 8, 5, 6
    mixer = ContextAggregation.from_cfg(cyclemlp_mixer(), dim=c, hw=(h, w)).to(D)
    _randomise(mixer)
    x = torch.randn(2, c, h, w, dtype=D)
    w_h, b_h = _conv_weight(mixer, "branches.0.proj")
    w_w, b_w = _conv_weight(mixer, "branches.1.proj")
    w_c, b_c = _conv_weight(mixer, "branches.2.proj")
    ys = [
        cyclemlp_cycle_fc(x, w_h, b_h, (1, 3)).permute(0, 2, 3, 1),  # sfc_h: pseudo-kernel 1×3
        cyclemlp_cycle_fc(x, w_w, b_w, (3, 1)).permute(0, 2, 3, 1),  # sfc_w: 3×1
        F.linear(x.permute(0, 2, 3, 1), w_c[:, :, 0, 0], b_c),  # mlp_c
    ]
    fc1, fc2 = cast(nn.Linear, mixer.reweight[0]), cast(nn.Linear, mixer.reweight[2])
    w_p, b_p = _conv_weight(mixer, "proj_out.1")
    theirs = F.linear(split_attention(ys, fc1, fc2), w_p[:, :, 0, 0], b_p).permute(0, 3, 1, 2)
    torch.testing.assert_close(mixer(x), theirs, atol=1e-12, rtol=0)


@pytest.mark.parametrize(("c", "hw", "segments"), [(12, (4, 4), None), (12, (3, 6), 3), (8, (4, 4), 8)])
def test_vip_mixer_is_the_released_weighted_permute_mlp(
    c: int, hw: tuple[int, int], segments: int | None
) -> None:
    h, w = hw
    mixer = ContextAggregation.from_cfg(vip_mixer(segment_dim=segments), dim=c, hw=hw).to(D)
    _randomise(mixer)
    x = torch.randn(2, c, h, w, dtype=D)
    xl = x.permute(0, 2, 3, 1)
    g_h = segments or h
    g_w = segments or w
    w_c, b_c = _conv_weight(mixer, "branches.2.proj")
    ys = [
        vip_permute(xl, mixer.get_parameter("branches.0.affinity.weight"), g_h, "h"),
        vip_permute(xl, mixer.get_parameter("branches.1.affinity.weight"), g_w, "w"),
        F.linear(xl, w_c[:, :, 0, 0], b_c),
    ]
    fc1, fc2 = cast(nn.Linear, mixer.reweight[0]), cast(nn.Linear, mixer.reweight[2])
    w_p, b_p = _conv_weight(mixer, "proj_out.1")
    theirs = F.linear(split_attention(ys, fc1, fc2), w_p[:, :, 0, 0], b_p).permute(0, 3, 1, 2)
    torch.testing.assert_close(mixer(x), theirs, atol=1e-12, rtol=0)


def test_gmlp_mixer_is_the_released_block_body() -> None:
    d, h, w = 6, 3, 4
    mixer = ContextAggregation.from_cfg(gmlp_mixer(width_ratio=3.0), dim=d, hw=(h, w)).to(D)
    _randomise(mixer)
    x = torch.randn(2, d, h, w, dtype=D)
    sgu = cast(SpatialGating, mixer.branches[0].affinity)  # type: ignore[union-attr]
    w_v, b_v = _conv_weight(mixer, "proj_in.0")
    assert b_v is not None
    fc1_w = torch.cat([sgu.gate.weight, w_v[:, :, 0, 0]])  # timm's fc1: [u; v] halves
    fc1_b = torch.cat([sgu.gate.bias, b_v])
    value_norm = mixer.proj_in[3]
    norm = nn.LayerNorm(3 * d, eps=value_norm.eps).to(D)
    norm.load_state_dict(value_norm.state_dict())
    z = F.gelu(F.linear(x.flatten(2).transpose(1, 2), fc1_w, fc1_b))  # (B, N, d_ffn)
    w_o, b_o = _conv_weight(mixer, "proj_out.1")
    theirs = F.linear(gmlp_spatial_gating(z, norm, sgu.weight, sgu.bias), w_o[:, :, 0, 0], b_o)
    torch.testing.assert_close(mixer(x), theirs.transpose(1, 2).reshape(2, d, h, w), atol=1e-12, rtol=0)


def test_spatial_gating_starts_as_the_gate() -> None:
    # W ≈ 0 and b = 1 at initialisation (gMLP, sec. 2.1): the unit passes z₁ through
    aff = create_affinity("spatial_gating", dim=4, hw=(3, 3))
    v, x = torch.randn(2, 4, 3, 3), torch.randn(2, 4, 3, 3)
    gate = cast(SpatialGating, aff).gate_values(x).reshape(2, 4, 3, 3)
    torch.testing.assert_close(aff(v, x), gate, atol=1e-4, rtol=0)


def test_reweight_is_not_materialisable_and_says_so() -> None:
    from affinity.errors import ConfigError

    mixer = ContextAggregation.from_cfg(cyclemlp_mixer(), dim=6, hw=(4, 4))
    assert not mixer.is_linear
    with pytest.raises(ConfigError, match="reweighting"):
        mixer.materialize(torch.randn(1, 6, 4, 4))


def test_global_filter_fft_flops_are_counted_as_gfnets_authors_count() -> None:
    from affinity.flops import count_flops

    c, h, w = 8, 14, 14
    aff = create_affinity("global_filter", dim=c, hw=(h, w))
    report = count_flops(aff, torch.zeros(1, c, h, w))
    assert report.unsupported == {}
    # rfft2 over 14×14 = 196 points (⌈log₂⌉ 8) and irfft2 over 14×8 = 112 points (⌈log₂⌉ 7)
    assert report.total == c * 196 * 8 + c * 112 * 7
