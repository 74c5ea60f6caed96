"""FLOP counting: closed forms for the handles, zero-on-purpose ops, dense N×N cost, params."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from affinity.flops import UNIT, count_flops, count_params
from affinity.models import create_model


class _Attend(nn.Module):
    def __init__(self, mask: bool) -> None:
        super().__init__()
        self.mask = mask

    def forward(self, q: torch.Tensor) -> torch.Tensor:
        k = q.flip(2)
        v = q[..., :3]
        bias = torch.zeros(q.shape[2], q.shape[2]) if self.mask else None
        return F.scaled_dot_product_attention(q, k, v, attn_mask=bias)


def test_sdpa_counts_both_products_with_and_without_mask() -> None:
    q = torch.randn(2, 4, 10, 8)  # (B, heads, N, d)
    for mask in (False, True):
        report = count_flops(_Attend(mask), q)
        assert report.unsupported == {}
        assert report.total == 2 * 4 * 10 * 10 * 8 + 2 * 4 * 10 * 10 * 3


class _Elementwise(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.gelu(x) + x * 2
        y = torch.roll(y, 1, 2).softmax(-1)
        y = F.pad(y, (1, 1, 1, 1))[:, :, 1:-1, 1:-1]
        return torch.sigmoid(y[:, :, torch.arange(3)]).mean()


def test_elementwise_roll_pad_slicing_count_zero_on_purpose() -> None:
    report = count_flops(_Elementwise(), torch.randn(1, 2, 5, 5))
    assert report.total == 0
    assert report.unsupported == {}


def test_linear_and_conv_closed_forms_and_unit() -> None:
    model = nn.Sequential(nn.Conv2d(3, 8, 4, stride=4), nn.Flatten(), nn.Linear(8 * 4 * 4, 5))
    report = count_flops(model, torch.randn(2, 3, 16, 16))
    conv = 2 * 8 * 4 * 4 * (3 * 4 * 4)
    assert report.total == conv + 2 * 128 * 5
    assert report.by_module["0"] == conv
    assert report.by_operator["conv"] == conv
    assert "multiply-add" in report.unit and report.unit == UNIT
    assert report.batch_size == 2


def test_small_as_mlp_matches_its_closed_form() -> None:
    """One-stage AS-MLP-like model: every FLOP is a 1×1 conv, a GroupNorm or the head."""
    model = create_model(
        "as_mlp_mobile", num_classes=10, img_size=32, in_chans=1, dims=(8, 16, 32, 64), depth=1
    )
    report = count_flops(model, torch.randn(1, 1, 32, 32))
    assert report.unsupported == {}
    n0, c0 = 8 * 8, 8
    block0 = report.by_module["stages.0.blocks.0"]
    mixer = 4 * n0 * c0 * c0  # proj_in, two branch projections, proj_out
    mlp = 2 * n0 * c0 * 4 * c0
    norms = 4 * 5 * n0 * c0  # norm1, norm2, two inside the mixer (fvcore: 5 per element with affine)
    assert block0 == mixer + mlp + norms
    # dense N×N cost of that mixer: two shift branches, each C·N·N
    assert report.dense_nxn["stages.0.blocks.0.mixer"] == 2 * c0 * n0 * n0


def test_count_params_excludes_and_dedupes() -> None:
    lin = nn.Linear(4, 3)
    shared = nn.Sequential(lin, nn.ReLU(), lin)
    assert count_params(shared) == 4 * 3 + 3
    model = nn.Sequential()
    model.add_module("body", nn.Linear(5, 5))
    model.add_module("head", nn.Linear(5, 2))
    assert count_params(model, exclude=("head",)) == 30
    assert count_params(model) == 42


def test_counting_restores_training_mode() -> None:
    model = create_model("resmlp_s12", num_classes=2, img_size=32, in_chans=1, depth=1)
    model.train()
    count_flops(model, torch.randn(1, 1, 32, 32))
    assert model.training


def test_meta_device_counts_as_the_cpu_does() -> None:
    """A model built on the meta device (no weights allocated) gets the CPU model's figures and
    stays on the meta device."""
    kwargs = {"num_classes": 10, "img_size": 32, "in_chans": 1, "dims": (8, 16, 32, 64), "depth": 1}
    with torch.device("meta"):
        meta_model = create_model("as_mlp_mobile", **kwargs)
        meta_x = torch.randn(2, 1, 32, 32)
    on_meta = count_flops(meta_model, meta_x)
    on_cpu = count_flops(create_model("as_mlp_mobile", **kwargs), torch.randn(2, 1, 32, 32))
    assert on_meta.total == on_cpu.total > 0
    assert on_meta.by_module == on_cpu.by_module
    assert on_meta.dense_nxn == on_cpu.dense_nxn
    assert on_meta.batch_size == 2
    assert all(p.is_meta for p in meta_model.parameters())
