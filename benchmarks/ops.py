"""Time every affinity's fast path against its materialised matrix and its authors' formulation.

For each affinity at three shapes (B=8, C=96, 56×56; B=8, C=768, 7×7; and ViP-S/7's first
stage, B=8, C=192, 32×32) it prints:

- ``fast ms``: ``affinity(v, x)``, the path models use;
- ``matrix ms``: the same output from the materialised matrix: one batched matmul,
  broadcasting a matrix shared over the batch or the channels (a static matrix is built
  once beforehand; a dynamic one, A(X), is built inside every call, as it must be);
  ``n/a (X GiB)`` when that matrix would not fit in the memory budget;
- ``released ms``: the operator as its authors' code computes it (on their layout, channels
  last where their models are; ``tests/ops/released.py``), checked equal first:
  svip-lab/AS-MLP's ``F.pad → torch.chunk → torch.roll per chunk → torch.cat → torch.narrow``;
  PoolFormer's ``AvgPool2d − x``; GFNet's ``rfft2 → ⊙ K → irfft2``; gMLP's spatial gating
  (timm); ViP's ``mlp_h`` / ``mlp_w`` permute-reshape-Linear; CycleMLP's Cycle FC (the 1×1
  projection included on both sides; torchvision's ``deform_conv2d`` is no dependency here,
  so its fixed-offset sampling is ``grid_sample``, which is what a deformable conv computes).
  The goal: fast ≤ released;
- ``dwconv ms`` (global_filter only): the same circulant as a depthwise conv with the same
  support (an H×W kernel per channel over the circularly padded map).

Median of ``--repeats`` runs after one warm-up (fewer for runs over a second).

    python benchmarks/ops.py [--threads 1] [--repeats 7] [--budget-gib 4] [--device cpu]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from affinity.ops import Affinity, create_affinity
from affinity.ops.cycle import CycleShift
from affinity.ops.fourier import GlobalFilter
from affinity.ops.gating import SpatialGating
from affinity.ops.permute import PermuteMLP
from affinity.ops.pooling import Pooling
from affinity.ops.shift import AxialShift

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests.ops.released

SHAPES = [(8, 96, 56, 56), (8, 768, 7, 7), (8, 192, 32, 32)]


def variants(c: int, side: int) -> list[tuple[str, str, dict[str, Any]]]:
    """(label, registry name, kwargs) of the affinities timed, as the published models use them."""
    heads = max(1, c // 32)
    # ViP: segments = the map's side when it divides C (then H·S = C), else segments of 2 channels
    segments = side if c % side == 0 else c // 2
    out: list[tuple[str, str, dict[str, Any]]] = [
        ("identity", "identity", {}),
        ("axial_shift s5 w", "axial_shift", {"shift_size": 5, "axis": "w"}),
        ("axial_shift s5 h", "axial_shift", {"shift_size": 5, "axis": "h"}),
        ("spatial_shift", "spatial_shift", {}),
        ("dwconv k5", "dwconv", {"kernel_size": 5}),
        ("dwconv k3 reflect", "dwconv", {"kernel_size": 3, "padding": "reflect"}),
        ("token_mlp", "token_mlp", {}),
        (f"attention h{heads}", "attention", {"heads": heads}),
    ]
    if side % 7 == 0:  # Swin's windows tile the map
        window = {"heads": heads, "window_size": 7, "shift_size": 3, "rel_pos_bias": True}
        out.append((f"attention h{heads} win7 shift3", "attention", window))
    out += [
        ("pooling k3", "pooling", {}),
        ("global_filter", "global_filter", {}),
        ("cycle_shift k3 w (+1x1)", "cycle_shift", {"axis": "w"}),
        ("spatial_gating", "spatial_gating", {}),
        (f"permute_mlp h G{segments}", "permute_mlp", {"axis": "h", "segment_dim": segments}),
        (f"permute_mlp w G{segments}", "permute_mlp", {"axis": "w", "segment_dim": segments}),
    ]
    return out


def released_axial_shift(x: torch.Tensor, shift_size: int, axis: str) -> torch.Tensor:
    """svip-lab/AS-MLP's shift, as released (zero padding, dilation 1)."""
    _, _, h, w = x.shape
    pad = shift_size // 2
    x = F.pad(x, (pad, pad, pad, pad), "constant", 0)
    xs = torch.chunk(x, shift_size, 1)
    dim = 3 if axis == "w" else 2
    x_cat = torch.cat([torch.roll(x_c, s, dim) for x_c, s in zip(xs, range(-pad, pad + 1))], 1)
    return torch.narrow(torch.narrow(x_cat, 2, pad, h), 3, pad, w)


Op = Callable[[], torch.Tensor]


def released(aff: Affinity, v: torch.Tensor, x: torch.Tensor) -> tuple[Op, Op] | None:
    """(the authors' formulation, ours in the same terms) on the same data, or None.

    Both return (B, C, H, W) outside the timed call's layout change: the authors' channels-last
    input is prepared once, beforehand, as their models carry it. Cycle FC includes its 1×1
    projection, so ours is ``conv1x1(cycle_shift(v))``.
    """
    from tests.ops import released as rel

    vl = v.permute(0, 2, 3, 1).contiguous()  # (B, H, W, C), the layout ViP's and GFNet's code take

    def ours() -> torch.Tensor:
        return aff(v, x)

    if isinstance(aff, AxialShift):
        size, axis = aff.shift_size, aff.axis
        return (lambda: released_axial_shift(v, size, axis)), ours
    if isinstance(aff, Pooling):
        return (lambda: rel.poolformer_pooling(v, aff.pool_size)), ours
    if isinstance(aff, GlobalFilter):
        weight = aff.complex_weight
        return (lambda: rel.gfnet_global_filter(vl, weight).permute(0, 3, 1, 2)), ours
    if isinstance(aff, PermuteMLP):
        w_p, g, side = aff.weight, aff.segment_dim, aff.axis
        return (lambda: rel.vip_permute(vl, w_p, g, side).permute(0, 3, 1, 2)), ours
    if isinstance(aff, SpatialGating):
        gate, w_s, b_s = aff.gate, aff.weight, aff.bias
        b, c, h, w = v.shape
        v_tok, x_tok = v.flatten(2).transpose(1, 2), x.flatten(2).transpose(1, 2)  # (B, N, C), timm's

        def sgu() -> torch.Tensor:
            u = F.gelu(gate(x_tok))
            out = u * F.linear(v_tok.transpose(-1, -2), w_s, b_s).transpose(-1, -2)
            return out.transpose(1, 2).reshape(b, c, h, w)

        return sgu, ours
    if isinstance(aff, CycleShift):
        c = v.shape[1]
        proj = torch.nn.Conv2d(c, c, 1).to(v.device)
        kernel = (1, aff.kernel_size) if aff.axis == "w" else (aff.kernel_size, 1)
        return (lambda: rel.cyclemlp_cycle_fc(v, proj.weight, proj.bias, kernel)), (lambda: proj(aff(v, x)))
    return None


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def median_ms(fn: Callable[[], Any], repeats: int, device: str) -> float:
    with torch.no_grad():
        fn()  # warm-up
        sync(device)
        times: list[float] = []
        while len(times) < repeats:
            start = time.perf_counter()
            fn()
            sync(device)
            times.append((time.perf_counter() - start) * 1e3)
            if times[-1] > 1000 and len(times) >= 3:
                break
    return statistics.median(times)


def matrix_apply(a: torch.Tensor, v: torch.Tensor, aff: Affinity, x: torch.Tensor) -> torch.Tensor:
    """``einsum('bcij,bcj->bci')`` with a broadcast (size-1) batch or channel dimension kept
    unexpanded; over channel blocks of ``aff.channel_block`` channels (Permute-MLP)."""
    b, c, k = v.shape[0], v.shape[1], aff.channel_block
    vf = v.reshape(b, c // k, -1)  # (B, C/k, k·N)
    if a.shape[0] == 1 and a.shape[1] == 1:
        out = torch.einsum("ij,bcj->bci", a[0, 0], vf)
    elif a.shape[0] == 1:
        out = torch.einsum("cij,bcj->bci", a[0], vf)
    else:
        out = torch.einsum("bcij,bcj->bci", a, vf)
    out = out.reshape(b, c, -1)
    off = aff.offset(x)
    out = out if off is None else out + off
    return out.reshape(v.shape[0], v.shape[1], *aff.out_hw(v.shape[2], v.shape[3]))


def matrix_dims(name: str, kwargs: dict[str, Any], b: int, c: int) -> tuple[int, int]:
    """The (batch, channel) dims of the materialised matrix, read from a 7×7 probe (no big allocation)."""
    probe = create_affinity(name, dim=c, hw=(7, 7), **kwargs)
    with torch.no_grad():
        a = probe.materialize(torch.randn(b, c, 7, 7))
    return a.shape[0], a.shape[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--budget-gib", type=float, default=4.0, help="largest matrix to materialise")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = args.device
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, device {device}, torch threads {torch.get_num_threads()}, float32")
    print(f"median of up to {args.repeats} runs; matrix budget {args.budget_gib} GiB\n")
    print(f"load average {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}\n")
    header = (
        f"{'shape (B,C,H,W)':<18} {'affinity':<30} {'fast ms':>9} {'matrix ms':>16} {'released ms':>12} "
        f"{'dwconv ms':>10}"
    )
    print(header)
    print("-" * len(header))
    for b, c, h, w in SHAPES:
        v = torch.randn(b, c, h, w, device=device)
        x = torch.randn(b, c, h, w, device=device)
        for label, name, kwargs in variants(c, h):
            fast, matrix, rel, dw = bench(name, kwargs, v, x, args.repeats, args.budget_gib, device)
            print(
                f"{f'{b},{c},{h},{w}':<18} {label:<30} {fast:>9.3f} {matrix:>16} {rel:>12} {dw:>10}",
                flush=True,
            )
    print(f"\nload average {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}")


def bench(
    name: str,
    kwargs: dict[str, Any],
    v: torch.Tensor,
    x: torch.Tensor,
    repeats: int,
    budget_gib: float,
    device: str,
) -> tuple[float, str, str, str]:
    """(fast ms, matrix ms or 'n/a (X GiB)', released ms or '', dwconv ms or '') for one
    affinity on (v, x)."""
    b, c, h, w = v.shape
    n = h * w
    aff = create_affinity(name, dim=c, hw=(h, w), **kwargs).to(device)
    fast = median_ms(lambda: aff(v, x), repeats, device)
    mb, mc = matrix_dims(name, kwargs, b, c)
    k = aff.channel_block
    gib = mb * mc * (k * n) ** 2 * 4 / 2**30
    if gib > budget_gib:
        matrix = f"n/a ({gib:.1f} GiB)"
    else:
        with torch.no_grad():
            a = aff.materialize(x)
            if aff.dynamic:  # A(X) depends on the input: building it is part of every call
                ms = median_ms(lambda: matrix_apply(aff.materialize(x), v, aff, x), repeats, device)
            else:
                ms = median_ms(lambda: matrix_apply(a, v, aff, x), repeats, device)
            torch.testing.assert_close(matrix_apply(a, v, aff, x), aff(v, x), atol=1e-3, rtol=1e-3)
        matrix = f"{ms:.3f}"
    rel = ""
    pair = released(aff, v, x)
    if pair is not None:
        theirs, ours = pair
        with torch.no_grad():
            torch.testing.assert_close(theirs(), ours(), atol=1e-4, rtol=1e-4)
        rel = f"{median_ms(theirs, repeats, device):.3f}"
        if name == "cycle_shift":  # fast is ours with the projection, as theirs
            fast = median_ms(ours, repeats, device)
    dw = ""
    if name == "global_filter":
        from tests.ops.released import circular_depthwise_conv

        with torch.no_grad():
            assert isinstance(aff, GlobalFilter)
            kernel = aff.kernel()
            torch.testing.assert_close(circular_depthwise_conv(v, kernel), aff(v, x), atol=1e-4, rtol=1e-4)
        dw = f"{median_ms(lambda: circular_depthwise_conv(v, kernel), repeats, device):.3f}"
    return fast, matrix, rel, dw


if __name__ == "__main__":
    main()
