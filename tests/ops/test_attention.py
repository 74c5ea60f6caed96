"""Attention: global and Swin windows against an independent Swin-style computation."""

from __future__ import annotations

import pytest
import torch

from affinity.ops import create_affinity
from affinity.ops.attention import Attention


def swin_reference(a: Attention, v: torch.Tensor, x: torch.Tensor, ws: int, s: int) -> torch.Tensor:
    """Swin's WindowAttention + SwinTransformerBlock order (roll, partition, -100 mask, reverse)."""
    b, c, h, w = v.shape
    nh, d = a.heads, c // a.heads
    qk = torch.roll(a.qk(x.permute(0, 2, 3, 1)), (-s, -s), (1, 2))
    vt = torch.roll(v.permute(0, 2, 3, 1), (-s, -s), (1, 2))

    def part(t: torch.Tensor) -> torch.Tensor:
        bb, hh, ww, cc = t.shape
        return t.view(bb, hh // ws, ws, ww // ws, ws, cc).permute(0, 1, 3, 2, 4, 5).reshape(-1, ws * ws, cc)

    img = torch.zeros(1, h, w, 1)
    cnt = 0
    if s:
        for hs in (slice(0, -ws), slice(-ws, -s), slice(-s, None)):
            for wsl in (slice(0, -ws), slice(-ws, -s), slice(-s, None)):
                img[:, hs, wsl, :] = cnt
                cnt += 1
    mw = part(img).squeeze(-1)
    mask = (mw[:, None, :] - mw[:, :, None]).ne(0).to(v.dtype) * -100.0  # (nW, L, L)
    qw, vw = part(qk), part(vt)
    q, k = qw.reshape(-1, ws * ws, 2, nh, d).permute(2, 0, 3, 1, 4)
    vv = vw.reshape(-1, ws * ws, nh, d).transpose(1, 2)
    att = q @ k.transpose(-1, -2) * d**-0.5
    if a.rel_pos_table is not None:
        coords = torch.stack(torch.meshgrid(torch.arange(ws), torch.arange(ws), indexing="ij")).flatten(1)
        rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (ws - 1)
        idx = rel[..., 0] * (2 * ws - 1) + rel[..., 1]
        att = att + a.rel_pos_table[idx.view(-1)].view(ws * ws, ws * ws, -1).permute(2, 0, 1)[None]
    n_w = mw.shape[0]
    att = (att.view(b, n_w, nh, ws * ws, ws * ws) + mask[None, :, None]).view(-1, nh, ws * ws, ws * ws)
    out = (att.softmax(-1) @ vv).transpose(1, 2).reshape(-1, ws * ws, c)
    out = out.view(b, h // ws, w // ws, ws, ws, c).permute(0, 1, 3, 2, 4, 5).reshape(b, h, w, c)
    return torch.roll(out, (s, s), (1, 2)).permute(0, 3, 1, 2)


@pytest.mark.parametrize(("h", "w", "ws", "shift"), [(8, 8, 4, 0), (8, 8, 4, 2), (6, 9, 3, 1), (8, 12, 4, 3)])
def test_windowed_attention_matches_swin(h: int, w: int, ws: int, shift: int) -> None:
    a = create_affinity(
        "attention", dim=8, heads=2, window_size=ws, shift_size=shift, rel_pos_bias=True
    ).double()
    torch.nn.init.normal_(a.qk.weight)
    torch.nn.init.normal_(a.rel_pos_table)
    v = torch.randn(2, 8, h, w, dtype=torch.float64)
    x = torch.randn(2, 8, h, w, dtype=torch.float64)
    torch.testing.assert_close(a(v, x), swin_reference(a, v, x, ws, shift), atol=1e-10, rtol=0)
    torch.testing.assert_close(a(v, x), a.reference(v, x), atol=1e-10, rtol=0)


def test_materialized_rows_sum_to_one_and_windows_are_blocks() -> None:
    a = create_affinity("attention", dim=4, heads=2, window_size=2).double()
    x = torch.randn(1, 4, 4, 4, dtype=torch.float64)
    m = a.materialize(x)
    assert m.shape == (1, 4, 16, 16)
    torch.testing.assert_close(m.sum(-1), torch.ones(1, 4, 16, dtype=torch.float64))
    rows = torch.arange(16)
    win = (rows // 4 // 2) * 2 + (rows % 4) // 2
    assert (m[0, :, win[:, None] != win[None, :]] == 0).all()
    assert (m[0, :, win[:, None] == win[None, :]] > 0).all()
    assert torch.equal(m[0, 0], m[0, 1]) and not torch.equal(m[0, 1], m[0, 2])  # one matrix per head


def test_map_of_one_window_drops_the_shift_as_swin() -> None:
    a = create_affinity("attention", dim=4, heads=1, window_size=4, shift_size=2)
    b = create_affinity("attention", dim=4, heads=1, window_size=4)
    b.load_state_dict(a.state_dict())
    x = torch.randn(1, 4, 4, 4)
    torch.testing.assert_close(a(x), b(x))


def test_global_attention_on_a_class_token_sequence() -> None:
    a = create_affinity("attention", dim=6, heads=3).double()
    v = torch.randn(2, 6, 1, 197 - 180, dtype=torch.float64)
    out = a(v)
    assert out.shape == v.shape
    torch.testing.assert_close(out, a.reference(v), atol=1e-10, rtol=0)
    q, k = a.qk(v.flatten(2).transpose(1, 2)).view(2, 17, 2, 3, 2).permute(2, 0, 3, 1, 4)
    attn = (q @ k.transpose(-1, -2) / 2**0.5).softmax(-1)
    expected = (attn @ v.view(2, 3, 2, 17).transpose(2, 3)).transpose(2, 3).reshape(2, 6, 1, 17)
    torch.testing.assert_close(out, expected, atol=1e-10, rtol=0)


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning", "ignore::DeprecationWarning")
@pytest.mark.parametrize(
    ("window", "shift", "qkv_bias", "proj_bias", "layout"),
    [
        (None, 0, True, True, torch.channels_last),
        (4, 2, True, False, torch.contiguous_format),
        (4, 0, False, True, torch.channels_last),
        (4, 2, False, False, torch.channels_last),
    ],
)
def test_values_joined_to_queries_and_keys_give_the_plain_numbers(
    window: int | None, shift: int, qkv_bias: bool, proj_bias: bool, layout: torch.memory_format
) -> None:
    """One qkv product (``forward_with_values``, the mixer's path outside traces) equals the
    value projection then ``forward``, up to the rounding of a GEMM of another width (none at
    the zoo's widths: benchmarks/gemm_fraction.py prints max|diff| 0 for deit_s and swin_t)."""
    from affinity.ops.mixer import ContextAggregation

    torch.manual_seed(0)
    params: dict[str, object] = {"heads": 2, "qkv_bias": qkv_bias}
    if window is not None:
        params |= {"window_size": window, "shift_size": shift, "rel_pos_bias": True}
    mixer = ContextAggregation(
        dim=8, hw=(8, 12), branches=[{"affinity": "attention", "params": params}], proj_bias=proj_bias
    )
    assert mixer.joined_values
    mixer = mixer.double()
    x = torch.randn(3, 8, 8, 12, dtype=torch.float64).contiguous(memory_format=layout)
    attention = mixer.branch_affinities()[0]
    assert isinstance(attention, Attention)
    value = mixer.proj_in[0]
    exact = {"atol": 1e-12, "rtol": 0.0}
    torch.testing.assert_close(attention.forward_with_values(x, value), attention(value(x), x), **exact)
    plain = mixer.proj_out(mixer.aggregate(mixer.proj_in(x), x))
    torch.testing.assert_close(mixer(x), plain, **exact)
    seen: list[torch.Tensor] = []  # a hook on the affinity sees the plain call (reports read V)
    handle = attention.register_forward_hook(lambda _, args, out: seen.append(args[0]))
    torch.testing.assert_close(mixer(x), plain, **exact)
    handle.remove()
    assert len(seen) == 1 and torch.equal(seen[0], value(x))
    traced = torch.jit.trace(mixer, x)  # a trace keeps the plain ops
    assert "aten::cat" not in str(traced.graph)
    assert torch.equal(traced(x), plain)
