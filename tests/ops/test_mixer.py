"""ContextAggregation: coefficient modes as α·A_dyn + β·A_static, serial products, configs."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from affinity.errors import ConfigError, UnknownNameError
from affinity.ops import BranchCfg, ContextAggregation, MixerCfg

DIM, HW = 8, (4, 4)
CONTAINER = (BranchCfg("attention", {"heads": 2}), BranchCfg("dwconv", {"kernel_size": 3}))


def _mixer(coefficients: str, per_head: bool = False, **kw: object) -> ContextAggregation:
    cfg = MixerCfg(
        branches=CONTAINER,
        coefficients=coefficients,
        alpha=0.3,
        beta=0.6,
        coef_per_head=per_head,
        proj_in=False,
        proj_out=False,
        **kw,  # type: ignore[arg-type]
    )
    return ContextAggregation.from_cfg(cfg, dim=DIM, hw=HW).double()


def _apply(m: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    b, c = x.shape[:2]
    return torch.einsum("bcij,bcj->bci", m.expand(b, c, -1, -1), x.flatten(2)).view(x.shape)


@pytest.mark.parametrize(
    ("mode", "per_head", "alpha", "beta"),
    [
        ("sum", False, [1.0], [1.0]),
        ("fixed", False, [0.3], [0.6]),
        ("learnable", False, [0.3], [0.6]),
        ("learnable", True, [0.3, 0.3], [0.6, 0.6]),
        ("convex", False, [0.5], [0.5]),
    ],
)
def test_coefficients_combine_dynamic_and_static(
    mode: str, per_head: bool, alpha: list[float], beta: list[float]
) -> None:
    mixer = _mixer(mode, per_head)
    x = torch.randn(2, DIM, *HW, dtype=torch.float64)
    attn, conv = mixer.branch_affinities()
    a_dyn, a_static = attn.materialize(x), conv.materialize(x)
    if mode == "learnable":  # parameters initialised at the given values (rounded to float32)
        torch.testing.assert_close(
            mixer.alpha.detach(), torch.tensor(alpha, dtype=torch.float64), atol=1e-7, rtol=0
        )
        alpha, beta = mixer.alpha.detach().tolist(), mixer.beta.detach().tolist()
    al = torch.tensor(alpha, dtype=torch.float64).repeat_interleave(DIM // len(alpha)).view(1, -1, 1, 1)
    be = torch.tensor(beta, dtype=torch.float64).repeat_interleave(DIM // len(beta)).view(1, -1, 1, 1)
    expected = al * a_dyn + be * a_static
    torch.testing.assert_close(mixer.materialize(x), expected, atol=1e-12, rtol=0)
    torch.testing.assert_close(mixer(x), _apply(expected, x), atol=1e-10, rtol=0)


def test_fixed_coefficients_reach_the_device_once() -> None:
    """α and β as fixed numbers are moved to the map's device and dtype on the first call only
    (on a GPU a copy from the host waits for every queued kernel), and keep their values in a
    float32 map as in a float64 one."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Copies(TorchDispatchMode):
        made = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
            Copies.made += func.overloadpacket.__name__ in ("_to_copy", "lift_fresh")
            return func(*args, **(kwargs or {}))

    mixer = _mixer("fixed").float()
    x = torch.randn(2, DIM, *HW)
    first = mixer(x)
    with Copies():
        again = mixer(x)
    assert Copies.made == 0 and torch.equal(first, again)
    in_float32 = [float(torch.tensor(v, dtype=torch.float32)) for v in (0.3, 0.6)]
    assert sorted(float(c) for c in mixer._fixed.values()) == in_float32


def test_convex_and_per_head_learned_values_move() -> None:
    mixer = _mixer("convex", per_head=True)
    with torch.no_grad():
        mixer.w.copy_(torch.tensor([2.0, -1.0]))
    x = torch.randn(1, DIM, *HW, dtype=torch.float64)
    attn, conv = mixer.branch_affinities()
    a = torch.sigmoid(torch.tensor([2.0, -1.0], dtype=torch.float64)).repeat_interleave(4).view(1, -1, 1, 1)
    expected = a * attn.materialize(x) + (1 - a) * conv.materialize(x)
    torch.testing.assert_close(mixer.materialize(x), expected, atol=1e-12, rtol=0)
    (mixer(x) ** 2).sum().backward()
    assert mixer.w.grad is not None and (mixer.w.grad != 0).all()


def test_learnable_coefficients_get_gradients() -> None:
    mixer = _mixer("learnable")
    (mixer(torch.randn(1, DIM, *HW, dtype=torch.float64)) ** 2).sum().backward()
    assert mixer.alpha.grad is not None and mixer.beta.grad is not None


def test_container_pam_static_after_softmax() -> None:
    """PAM: attention plus a per-head static token matrix, α = β = 1, over a 1×(1+N) sequence."""
    cfg = MixerCfg(
        branches=(BranchCfg("attention", {"heads": 2}), BranchCfg("token_mlp", {"heads": 2, "bias": False})),
        coefficients="fixed",
        proj_in=False,
        proj_out=False,
    )
    mixer = ContextAggregation.from_cfg(cfg, dim=DIM, hw=(1, 17)).double()
    x = torch.randn(2, DIM, 1, 17, dtype=torch.float64)
    m = mixer.materialize(x)
    attn, static = mixer.branch_affinities()
    torch.testing.assert_close(m, attn.materialize(x) + static.materialize(x), atol=1e-12, rtol=0)
    torch.testing.assert_close(mixer(x), _apply(m, x), atol=1e-10, rtol=0)


def test_serial_mixer_is_the_product_and_mixer_mlp_is_not_linear() -> None:
    branches = (
        BranchCfg("token_mlp", {"out_tokens": 6, "bias": False}),
        BranchCfg("token_mlp", {"in_tokens": 6, "bias": False}),
    )
    cfg = MixerCfg(branches=branches, connection="serial", proj_in=False, proj_out=False)
    mixer = ContextAggregation.from_cfg(cfg, dim=DIM, hw=HW).double()
    x = torch.randn(2, DIM, *HW, dtype=torch.float64)
    first, second = mixer.branch_affinities()
    torch.testing.assert_close(mixer.materialize(x), second.materialize(x) @ first.materialize(x))
    torch.testing.assert_close(mixer(x), _apply(mixer.materialize(x), x), atol=1e-10, rtol=0)
    # MLP-Mixer: GELU between the two token layers
    gelu = (BranchCfg("token_mlp", {"out_tokens": 6}, act="gelu"), BranchCfg("token_mlp", {"in_tokens": 6}))
    mixer = ContextAggregation(
        dim=DIM, hw=HW, branches=gelu, connection="serial", proj_in=False, proj_out=False
    )
    a, b = mixer.branch_affinities()
    xf = torch.randn(2, DIM, *HW)
    torch.testing.assert_close(mixer(xf), b(F.gelu(a(xf))))
    assert not mixer.is_linear
    with pytest.raises(ConfigError, match="not linear"):
        mixer.materialize(xf)


def test_as_mlp_mixer_shape_and_not_linear() -> None:
    cfg = MixerCfg(
        branches=(
            BranchCfg("axial_shift", {"shift_size": 5, "axis": "w"}, proj=True, act="gelu"),
            BranchCfg("axial_shift", {"shift_size": 5, "axis": "h"}, proj=True, act="gelu"),
        ),
        proj_in_norm="groupnorm",
        proj_in_act="gelu",
        proj_out_norm="groupnorm",
    )
    mixer = ContextAggregation.from_cfg(cfg, dim=DIM, hw=(7, 7))
    assert mixer(torch.randn(2, DIM, 7, 7)).shape == (2, DIM, 7, 7)
    assert not mixer.is_linear
    n_params = sum(p.numel() for p in mixer.parameters())
    assert n_params == 4 * (DIM * DIM + DIM) + 2 * 2 * DIM  # four 1x1 convs + two GroupNorms


@pytest.mark.parametrize("norm", ["groupnorm", "layernorm", "batchnorm"])
def test_norms_in_bchw_layout(norm: str) -> None:
    mixer = ContextAggregation(
        dim=DIM, branches=[BranchCfg("identity")], proj_in=False, proj_in_norm=norm, proj_out=False
    )
    x = torch.randn(3, DIM, 4, 5) * 3 + 2
    y = mixer(x)
    if norm == "layernorm":  # each token normalised over channels
        torch.testing.assert_close(y.mean(1), torch.zeros(3, 4, 5), atol=1e-5, rtol=0)
    elif norm == "groupnorm":  # each sample over (C, H, W)
        torch.testing.assert_close(y.mean((1, 2, 3)), torch.zeros(3), atol=1e-5, rtol=0)
    else:  # each channel over (B, H, W)
        torch.testing.assert_close(y.mean((0, 2, 3)), torch.zeros(DIM), atol=1e-5, rtol=0)


def test_bad_mixer_configs_name_their_key() -> None:
    with pytest.raises(ConfigError, match=r"branches\[0\].params.kernel"):
        ContextAggregation(dim=DIM, branches=[{"affinity": "dwconv", "params": {"kernel": 3}}])
    with pytest.raises(UnknownNameError, match="dwconv"):
        ContextAggregation(dim=DIM, branches=[BranchCfg("dw_conv")])
    with pytest.raises(ConfigError, match="coef_per_head"):
        ContextAggregation(
            dim=DIM, branches=[BranchCfg("dwconv")], coefficients="learnable", coef_per_head=True
        )
    with pytest.raises(ConfigError, match="serial"):
        ContextAggregation(
            dim=DIM, hw=HW, branches=[BranchCfg("identity"), BranchCfg("token_mlp", {"out_tokens": 3})]
        )
    with pytest.raises(ConfigError, match="coefficients"):
        ContextAggregation(dim=DIM, branches=[BranchCfg("identity")], coefficients="softmax")


@pytest.mark.parametrize("layout", ["interleaved", "consecutive"])
def test_shared_batchnorm_pools_each_share_set(layout: str) -> None:
    """One mean and variance per share set over its C/S channels; interleaved is RepMLPNet's
    BatchNorm2d(S) on the map reshaped to (B·C/S, S, h, w)."""
    sets = 2
    branch = BranchCfg(
        "dwconv", {"kernel_size": 1, "share": sets, "share_layout": layout}, norm="shared_batchnorm"
    )
    mixer = ContextAggregation(dim=DIM, hw=HW, branches=[branch], proj_in=False, proj_out=False)
    norm = mixer.branches[0].norm
    assert [p.numel() for p in norm.parameters()] == [sets, sets]
    x = torch.randn(3, DIM, *HW) * torch.arange(1.0, DIM + 1).view(1, DIM, 1, 1) + 5
    y = mixer(x)
    z = mixer.branch_affinities()[0](x, x)  # the conv's output, before the norm
    channel_set = torch.arange(DIM) % sets if layout == "interleaved" else torch.arange(DIM) // (DIM // sets)
    for s in range(sets):
        group = z[:, channel_set == s]
        expect = (group - group.mean()) / torch.sqrt(group.var(unbiased=False) + 1e-5)
        torch.testing.assert_close(y[:, channel_set == s], expect, atol=1e-4, rtol=1e-4)
    if layout == "interleaved":
        bn = torch.nn.BatchNorm2d(sets)
        torch.testing.assert_close(y, bn(z.reshape(-1, sets, *HW)).reshape(z.shape))
    assert not mixer.is_linear
    with pytest.raises(ConfigError, match="not linear"):
        mixer.materialize(x)


def test_branch_batchnorm_is_over_channels_and_before_the_activation() -> None:
    branch = BranchCfg("identity", norm="batchnorm", act="relu")
    mixer = ContextAggregation(dim=DIM, branches=[branch], proj_in=False, proj_out=False)
    x = torch.randn(4, DIM, 3, 3) * 2 + 1
    expect = F.relu((x - x.mean((0, 2, 3), keepdim=True)) / torch.sqrt(x.var((0, 2, 3), False, True) + 1e-5))
    torch.testing.assert_close(mixer(x), expect, atol=1e-5, rtol=1e-5)


def test_branch_norm_config_round_trip_and_bad_values() -> None:
    cfg = MixerCfg(
        branches=(BranchCfg("token_mlp", {"share": 2}, norm="shared_batchnorm"), BranchCfg("identity"))
    )
    data = cfg.to_dict()
    assert data["branches"][0]["norm"] == "shared_batchnorm"
    assert "norm" not in data["branches"][1]  # unset: the dict (and config hashes) as before
    assert MixerCfg.from_dict(data) == cfg
    old = {"branches": [{"affinity": "identity", "params": {}, "proj": False, "act": None}]}
    assert MixerCfg.from_dict(old).branches[0].norm is None
    with pytest.raises(ConfigError, match=r"norm='layernorm' is not allowed"):
        BranchCfg.from_dict({"affinity": "identity", "norm": "layernorm"})
    with pytest.raises(ConfigError, match=r"branches\[0\].norm='shared_batchnorm'.*'spatial_shift'"):
        ContextAggregation(dim=DIM, branches=[BranchCfg("spatial_shift", norm="shared_batchnorm")])
