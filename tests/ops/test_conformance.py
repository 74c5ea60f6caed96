"""One conformance suite for every registered affinity: shape, dtype, gradients, fast == matrix.

Every registered name needs an entry in ``FACTORIES`` (a new affinity without one fails
``test_every_affinity_has_a_factory``); each entry gives the affinity's variants for a
(C, H, W) case, so the same checks run over many sizes and hyperparameters.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from typing import Any

import pytest
import torch

from affinity.ops import AFFINITIES, Affinity, create_affinity

Kwargs = dict[str, Any]


def _smallest_divisor(c: int) -> int:
    return next((d for d in range(2, c + 1) if c % d == 0), 1)


def _attention(c: int, h: int, w: int) -> list[Kwargs]:
    heads = _smallest_divisor(c)
    out: list[Kwargs] = [{"heads": heads}, {"heads": 1, "qkv_bias": False}]
    g = math.gcd(h, w)
    if g >= 2:
        out.append({"heads": heads, "window_size": g, "rel_pos_bias": True})
        out.append({"heads": heads, "window_size": g, "shift_size": g // 2, "rel_pos_bias": True})
        if g < min(h, w) or g >= 4:
            out.append({"heads": heads, "window_size": g // 2 if g >= 4 else g, "shift_size": 1})
    return out


FACTORIES: dict[str, Callable[[int, int, int], list[Kwargs]]] = {
    "identity": lambda c, h, w: [{}],
    "axial_shift": lambda c, h, w: [
        {"shift_size": 5, "axis": "w"},
        {"shift_size": 3, "dilation": 2, "axis": "h", "padding": "circular"},
        {"shift_size": 3, "axis": "w", "padding": "reflect" if w > 1 else "zero"},
        {"shift_size": 7, "axis": "h", "padding": "replicate"},
    ],
    "spatial_shift": lambda c, h, w: [{}],
    "dwconv": lambda c, h, w: [
        {"kernel_size": 3},
        # reflect needs the pad below each side, circular at most each side (as F.pad)
        {"kernel_size": 3, "dilation": 2, "padding": "reflect" if min(h, w) > 2 else "zero", "bias": True},
        {"kernel_size": 5, "padding": "circular" if min(h, w) >= 2 else "replicate", "share": 1},
        {
            "kernel_size": 3,
            "padding": "replicate",
            "share": _smallest_divisor(c),
            "share_layout": "interleaved",
        },
    ],
    "token_mlp": lambda c, h, w: [
        {},
        {"heads": _smallest_divisor(c), "bias": False},
        {"heads": _smallest_divisor(c), "share_layout": "interleaved"},
        {"out_tokens": 3},
    ],
    "attention": _attention,
    "pooling": lambda c, h, w: [{}, {"pool_size": 5}, {"pool_size": 1}],
    "global_filter": lambda c, h, w: [{}],
    "cycle_shift": lambda c, h, w: [
        {"axis": "w"},
        {"axis": "h"},
        {"kernel_size": 5, "axis": "w"},
        {"kernel_size": 2, "axis": "h"},
    ],
    "spatial_gating": lambda c, h, w: [{}],
    "permute_mlp": lambda c, h, w: [
        {"axis": "h", "segment_dim": c},  # one channel a segment: the axial token MLP W_h ⊗ I
        {"axis": "w", "segment_dim": _smallest_divisor(c), "bias": True},
        {"axis": "h", "segment_dim": 1},  # one segment: every channel mixed with the tokens along H
    ],
}

# (B, C, H, W): odd and even sides, H != W, C not divisible by 4 or 5, batch > 1.
# Plus three drawn at random (seeded, so a failure reproduces).
_rng = random.Random(2022)
SIZES = [(2, 7, 5, 6), (3, 6, 4, 4), (1, 9, 7, 3), (2, 10, 6, 9), (2, 8, 8, 8)] + [
    (_rng.randint(1, 3), _rng.randint(1, 12), _rng.randint(1, 9), _rng.randint(1, 9)) for _ in range(3)
]


def _cases() -> list[Any]:
    cases = []
    for name in AFFINITIES.names():
        if name not in FACTORIES:
            continue
        for b, c, h, w in SIZES:
            for i, kwargs in enumerate(FACTORIES[name](c, h, w)):
                cases.append(pytest.param(name, kwargs, (b, c, h, w), id=f"{name}-{i}-{b}x{c}x{h}x{w}"))
    return cases


def _build(name: str, kwargs: Kwargs, shape: tuple[int, int, int, int], dtype: torch.dtype) -> Affinity:
    _, c, h, w = shape
    aff = create_affinity(name, dim=c, hw=(h, w), **kwargs).to(dtype)
    with torch.no_grad():  # move parameters off their (often zero or tiny) initial values
        for p in aff.parameters():
            p.normal_()
    return aff


def _inputs(
    aff: Affinity, shape: tuple[int, int, int, int], dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    b, c, h, w = shape
    v = torch.randn(b, c, h, w, dtype=dtype)
    x = torch.randn(b, c, h, w, dtype=dtype)
    return v, x


def test_every_affinity_has_a_factory() -> None:
    missing = [n for n in AFFINITIES.names() if n not in FACTORIES]
    assert not missing, f"add conformance factories for {missing}"


def test_every_affinity_names_its_paper() -> None:
    for name in AFFINITIES.names():
        cls = AFFINITIES.get(name)
        assert "(" in cls.paper and "=" in cls.paper, f"{name}: paper line names paper and equation"
        assert cls.__doc__ and "et al." in cls.__doc__, name


@pytest.mark.parametrize(("name", "kwargs", "shape"), _cases())
def test_fast_path_equals_matrix(name: str, kwargs: Kwargs, shape: tuple[int, int, int, int]) -> None:
    aff = _build(name, kwargs, shape, torch.float64)
    v, x = _inputs(aff, shape, torch.float64)
    out = aff(v, x)
    b, c, h, w = shape
    assert out.shape == (b, c, *aff.out_hw(h, w))
    a = aff.materialize(x)
    n_out = math.prod(aff.out_hw(h, w))
    k = aff.channel_block  # channels coupled by the matrix (Permute-MLP's segment), else 1
    assert a.dim() == 4 and a.shape[0] in (1, b) and a.shape[1] in (1, c // k)
    assert a.shape[2:] == (k * n_out, k * h * w)
    torch.testing.assert_close(out, aff.reference(v, x), atol=1e-10, rtol=0)
    assert torch.equal(aff(v, x), out)  # deterministic


@pytest.mark.parametrize(("name", "kwargs", "shape"), _cases()[::3])
def test_float32_shape_dtype_and_gradients(
    name: str, kwargs: Kwargs, shape: tuple[int, int, int, int]
) -> None:
    aff = _build(name, kwargs, shape, torch.float32)
    v, x = _inputs(aff, shape, torch.float32)
    v.requires_grad_(True)
    x.requires_grad_(True)
    out = aff(v, x)
    assert out.dtype == torch.float32
    assert out.shape[:2] == shape[:2]
    (out * torch.randn_like(out)).sum().backward()
    assert v.grad is not None and v.grad.abs().sum() > 0
    if aff.dynamic:
        assert x.grad is not None and x.grad.abs().sum() > 0
    for pname, p in aff.named_parameters():
        assert p.grad is not None, pname
        assert torch.isfinite(p.grad).all(), pname
        assert p.grad.abs().sum() > 0, pname
    torch.testing.assert_close(out.detach(), aff.reference(v.detach(), x.detach()), atol=1e-4, rtol=1e-4)
