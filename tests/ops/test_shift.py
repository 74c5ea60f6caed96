"""AS-MLP's axial shift and S2-MLP's spatial shift against the released formulations."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from affinity.ops import create_affinity
from affinity.ops._common import PADDINGS, _shift_groups


def released_axial_shift(
    x: torch.Tensor, shift_size: int, dilation: int, padding: str, axis: str
) -> torch.Tensor:
    """svip-lab/AS-MLP's shift (with the paper's dilation): F.pad -> chunk -> roll -> cat -> narrow."""
    _, _, h, w = x.shape
    pad = (shift_size // 2) * dilation
    mode = "constant" if padding == "zero" else padding
    x = F.pad(x, (pad, pad, pad, pad), mode)
    xs = torch.chunk(x, shift_size, 1)
    dim = 3 if axis == "w" else 2
    shifts = range(-pad, pad + 1, dilation)
    x_cat = torch.cat([torch.roll(x_c, s, dim) for x_c, s in zip(xs, shifts)], 1)
    return torch.narrow(torch.narrow(x_cat, 2, pad, h), 3, pad, w)


def one_hots(c: int, h: int, w: int) -> torch.Tensor:
    """Each channel one-hot at a different position (centre, corners, edges)."""
    x = torch.zeros(1, c, h, w, dtype=torch.float64)
    spots = [(h // 2, w // 2), (0, 0), (h - 1, w - 1), (0, w - 1), (h - 1, 0), (1, 1), (h // 2, 0)]
    for ch in range(c):
        i, j = spots[ch % len(spots)]
        x[0, ch, i, j] = 1
    return x


def test_shift5_one_hot_lands_where_the_paper_says() -> None:
    """Group g's one-hot at (3, 3) moves to w = 3 + (g − 2) (AS-MLP fig. 2, torch.roll direction)."""
    x = torch.zeros(1, 5, 7, 7)
    x[0, :, 3, 3] = 1
    out = create_affinity("axial_shift", dim=5, shift_size=5, axis="w")(x)
    for g in range(5):
        (hits,) = torch.nonzero(out[0, g]).tolist()
        assert hits == [3, 3 + g - 2]
    out_h = create_affinity("axial_shift", dim=5, shift_size=5, axis="h")(x)
    for g in range(5):
        (hits,) = torch.nonzero(out_h[0, g]).tolist()
        assert hits == [3 + g - 2, 3]


@pytest.mark.parametrize("padding", PADDINGS)
@pytest.mark.parametrize(("shift_size", "dilation"), [(5, 1), (3, 2), (7, 1), (5, 2), (1, 1)])
@pytest.mark.parametrize("axis", ["h", "w"])
@pytest.mark.parametrize("channels", [10, 7, 3])
def test_axial_shift_matches_released_code(
    padding: str, shift_size: int, dilation: int, axis: str, channels: int
) -> None:
    h, w = 7, 6  # every pad here (at most 2·2) is narrower than the map, as F.pad reflect needs
    aff = create_affinity(
        "axial_shift", dim=channels, shift_size=shift_size, dilation=dilation, padding=padding, axis=axis
    )
    for x in (one_hots(channels, h, w), torch.randn(2, channels, h, w, dtype=torch.float64)):
        expected = released_axial_shift(x, shift_size, dilation, padding, axis)
        assert torch.equal(aff(x), expected)
        torch.testing.assert_close(aff.reference(x), expected, atol=1e-12, rtol=0)


@pytest.mark.parametrize(
    ("padding", "left", "right"),
    # row [1, 2, 3, 4, 5]; group 0 moves −1 (reads i+1), group 2 moves +1 (reads i−1)
    [("zero", 0, 0), ("circular", 1, 5), ("reflect", 4, 2), ("replicate", 5, 1)],
)
def test_axial_shift_border_values(padding: str, left: float, right: float) -> None:
    row = torch.arange(1.0, 6.0).view(1, 1, 1, 5).expand(1, 3, 1, 5).contiguous()
    out = create_affinity("axial_shift", dim=3, shift_size=3, padding=padding, axis="w")(row)[0, :, 0]
    assert out[0].tolist() == [2, 3, 4, 5, left]
    assert out[1].tolist() == [1, 2, 3, 4, 5]
    assert out[2].tolist() == [right, 1, 2, 3, 4]


def test_axial_shift_dilation2_moves_by_multiples() -> None:
    x = torch.zeros(1, 3, 1, 9)
    x[0, :, 0, 4] = 1
    out = create_affinity("axial_shift", dim=3, shift_size=3, dilation=2, axis="w")(x)
    assert [int(torch.nonzero(out[0, g, 0])) for g in range(3)] == [2, 4, 6]


def test_axial_shift_few_channels_follow_torch_chunk() -> None:
    """C=7, s=5: torch.chunk gives groups of 2, 2, 2, 1 (4 groups, shifts −2..+1)."""
    aff = create_affinity("axial_shift", dim=7, shift_size=5, axis="w")
    assert aff.sizes == [c.shape[1] for c in torch.chunk(torch.zeros(1, 7, 1, 1), 5, 1)]
    assert aff.shifts == [-2, -1, 0, 1]


def test_spatial_shift_groups_and_borders() -> None:
    """S2-MLP: groups move +1 W, −1 W, +1 H, −1 H; the border keeps its own value."""
    h, w = 4, 5
    base = torch.arange(h * w, dtype=torch.float64).view(1, 1, h, w)
    x = base.expand(1, 4, h, w).contiguous()
    out = create_affinity("spatial_shift", dim=4)(x)[0]
    b = base[0, 0]
    assert torch.equal(out[0][:, 1:], b[:, :-1]) and torch.equal(out[0][:, 0], b[:, 0])
    assert torch.equal(out[1][:, :-1], b[:, 1:]) and torch.equal(out[1][:, -1], b[:, -1])
    assert torch.equal(out[2][1:], b[:-1]) and torch.equal(out[2][0], b[0])
    assert torch.equal(out[3][:-1], b[1:]) and torch.equal(out[3][-1], b[-1])


def test_spatial_shift_is_not_the_smearing_in_place_version() -> None:
    """Running the paper's pseudo-code literally in place would copy column 0 everywhere."""
    x = torch.arange(5.0).view(1, 1, 1, 5).expand(1, 4, 1, 5).contiguous()
    out = create_affinity("spatial_shift", dim=4)(x)
    assert out[0, 0, 0].tolist() == [0, 0, 1, 2, 3]


@pytest.mark.parametrize(
    ("channels", "sizes"), [(4, [1, 1, 1, 1]), (7, [1, 2, 2, 2]), (10, [2, 3, 2, 3]), (2, [0, 1, 0, 1])]
)
def test_spatial_shift_channel_split(channels: int, sizes: list[int]) -> None:
    """Splits at C//4, C//2, 3C//4 as the paper's slices; any C works."""
    aff = create_affinity("spatial_shift", dim=channels)
    assert aff.sizes == sizes
    x = torch.randn(2, channels, 3, 4, dtype=torch.float64)
    torch.testing.assert_close(aff(x), aff.reference(x), atol=1e-12, rtol=0)


#: every padding with shifts up to ±6 along a 5-wide map (reflect: up to ±3), and ±2 along H
GROUPED_SHIFTS = [
    *(("axial_shift", {"shift_size": 7, "dilation": 1 if p == "reflect" else 2, "axis": "w", "padding": p})
      for p in PADDINGS),
    *(("axial_shift", {"shift_size": 5, "axis": "h", "padding": p}) for p in PADDINGS),
    ("spatial_shift", {}),
    ("cycle_shift", {"kernel_size": 3, "axis": "h"}),
]  # fmt: skip


@pytest.mark.parametrize(("kind", "params"), GROUPED_SHIFTS)
@pytest.mark.parametrize("channels_last", [False, True])
def test_shift_gradient_is_that_of_slicing_bit_for_bit(
    kind: str, params: dict[str, object], channels_last: bool
) -> None:
    """One autograd node for all the groups gives the values and gradients autograd gives
    through the slice copies themselves, float32 bit for bit (replicate's border sums, up
    to 6 terms here, in the same order), the gradient's layout too."""
    aff = create_affinity(kind, dim=13, **params)
    padding = str(params.get("padding", "replicate" if kind == "spatial_shift" else "zero"))
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.randn(3, 13, 6, 5).contiguous(memory_format=fmt)
    g = torch.randn(3, 13, 6, 5)
    grads = []
    for fn in (aff, lambda v: _shift_groups(v, aff.groups, padding)):
        v = x.clone().requires_grad_()
        out = fn(v)
        out.backward(g)
        assert v.grad is not None
        grads.append((out, v.grad))
    (out, grad), (out_slices, grad_slices) = grads
    assert torch.equal(out, out_slices) and out.stride() == out_slices.stride()
    assert torch.equal(grad, grad_slices) and grad.stride() == grad_slices.stride()
    assert (grad != 0).any()


@pytest.mark.parametrize(("kind", "params"), GROUPED_SHIFTS)
def test_shift_gradient_bit_for_bit_for_any_input_and_gradient_layout(
    kind: str, params: dict[str, object]
) -> None:
    """A map that is a slice of a wider one (not one block per image: the slicing itself
    runs), one image, and gradients that are not dense (``sum()``'s expanded ones) or
    channels-last: values and gradients as autograd gives through the slice copies."""
    aff = create_affinity(kind, dim=13, **params)
    padding = str(params.get("padding", "replicate" if kind == "spatial_shift" else "zero"))
    wide = torch.randn(2, 13, 6, 8)
    views = [  # (leaf, the map taken from it)
        (wide, lambda t: t[..., :5]),
        (wide[:1, :, :, 3:].contiguous(), lambda t: t),
        (wide[..., :5].contiguous(memory_format=torch.channels_last), lambda t: t),
    ]
    weights = torch.randn(2, 13, 6, 5)
    losses = [
        lambda out: out.sum(),
        lambda out: (out * weights[: out.shape[0]]).sum(),
        lambda out: (out.contiguous(memory_format=torch.channels_last) ** 2).sum(),
    ]
    for leaf, view in views:
        for loss in losses:
            results = []
            for fn in (aff, lambda v: _shift_groups(v, aff.groups, padding)):
                v = leaf.detach().clone(memory_format=torch.preserve_format).requires_grad_()
                out = fn(view(v))
                loss(out).backward()
                assert v.grad is not None
                results.append((out, v.grad))
            (out, grad), (out_slices, grad_slices) = results
            assert torch.equal(out, out_slices) and out.stride() == out_slices.stride()
            assert torch.equal(grad, grad_slices) and grad.stride() == grad_slices.stride()


@pytest.mark.parametrize(("kind", "params"), GROUPED_SHIFTS)
def test_off_the_cpu_the_shift_is_a_gather_without_autograd_too(
    monkeypatch: pytest.MonkeyPatch, kind: str, params: dict[str, object]
) -> None:
    """Slicing launches kernels per group and copies border indices to the device on each call,
    so off the CPU (meta here, as CUDA) an eval forward takes the gather: the same numbers
    (checked on the CPU, both layouts) from precomputed indices."""
    from affinity.ops import _common

    aff = create_affinity(kind, dim=13, **params)
    padding = str(params.get("padding", "replicate" if kind == "spatial_shift" else "zero"))
    key = tuple(((c.start, c.stop, c.step), s, axis) for c, s, axis in aff.groups)
    for fmt in (torch.contiguous_format, torch.channels_last):
        x = torch.randn(3, 13, 6, 5).contiguous(memory_format=fmt)
        gathered = _common._plan(key, padding, (13, 6, 5)).forward(x)
        sliced = _shift_groups(x, aff.groups, padding)
        assert torch.equal(gathered, sliced) and gathered.stride() == sliced.stride()
    sliced_on: list[str] = []
    real = _common._shift_groups

    def recorded(v: torch.Tensor, *args: object) -> torch.Tensor:
        sliced_on.append(v.device.type)
        return real(v, *args)

    monkeypatch.setattr(_common, "_shift_groups", recorded)
    with torch.no_grad():
        for device in ("cpu", "meta"):
            out = aff(torch.randn(3, 13, 6, 5, device=device))
            assert out.shape == (3, 13, 6, 5) and out.device.type == device
    assert sliced_on == ["cpu"]
