"""Time every affinity's fast path against its materialised matrix, and AS-MLP's released shift.

For each affinity at two shapes (B=8, C=96, 56×56 and B=8, C=768, 7×7) it prints:

- ``fast ms``: ``affinity(v, x)``, the path models use;
- ``matrix ms``: the same output from the materialised matrix: one batched matmul,
  broadcasting a matrix shared over the batch or the channels (a static matrix is built
  once beforehand; a dynamic one, A(X), is built inside every call, as it must be);
  ``n/a (X GiB)`` when that matrix would not fit in the memory budget;
- ``released ms`` (axial_shift only): svip-lab/AS-MLP's ``F.pad → torch.chunk →
  torch.roll per chunk → torch.cat → torch.narrow``. The goal: fast ≤ released.

Median of ``--repeats`` runs after one warm-up (fewer for runs over a second).

    python benchmarks/ops.py [--threads 1] [--repeats 7] [--budget-gib 4] [--device cpu]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from affinity.ops import Affinity, create_affinity

SHAPES = [(8, 96, 56, 56), (8, 768, 7, 7)]


def variants(c: int) -> list[tuple[str, str, dict[str, Any]]]:
    """(label, registry name, kwargs) of the affinities timed, as the published models use them."""
    heads = c // 32
    return [
        ("identity", "identity", {}),
        ("axial_shift s5 w", "axial_shift", {"shift_size": 5, "axis": "w"}),
        ("axial_shift s5 h", "axial_shift", {"shift_size": 5, "axis": "h"}),
        ("spatial_shift", "spatial_shift", {}),
        ("dwconv k5", "dwconv", {"kernel_size": 5}),
        ("dwconv k3 reflect", "dwconv", {"kernel_size": 3, "padding": "reflect"}),
        ("token_mlp", "token_mlp", {}),
        (f"attention h{heads}", "attention", {"heads": heads}),
        (
            f"attention h{heads} win7 shift3",
            "attention",
            {"heads": heads, "window_size": 7, "shift_size": 3, "rel_pos_bias": True},
        ),
    ]


def released_axial_shift(x: torch.Tensor, shift_size: int, axis: str) -> torch.Tensor:
    """svip-lab/AS-MLP's shift, as released (zero padding, dilation 1)."""
    _, _, h, w = x.shape
    pad = shift_size // 2
    x = F.pad(x, (pad, pad, pad, pad), "constant", 0)
    xs = torch.chunk(x, shift_size, 1)
    dim = 3 if axis == "w" else 2
    x_cat = torch.cat([torch.roll(x_c, s, dim) for x_c, s in zip(xs, range(-pad, pad + 1))], 1)
    return torch.narrow(torch.narrow(x_cat, 2, pad, h), 3, pad, w)


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
    """``einsum('bcij,bcj->bci')`` with a broadcast (size-1) batch or channel dimension kept unexpanded."""
    vf = v.flatten(2)  # (B, C, N)
    if a.shape[0] == 1 and a.shape[1] == 1:
        out = torch.einsum("ij,bcj->bci", a[0, 0], vf)
    elif a.shape[0] == 1:
        out = torch.einsum("cij,bcj->bci", a[0], vf)
    else:
        out = torch.einsum("bcij,bcj->bci", a, vf)
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
    header = f"{'shape (B,C,H,W)':<18} {'affinity':<30} {'fast ms':>9} {'matrix ms':>16} {'released ms':>12}"
    print(header)
    print("-" * len(header))
    for b, c, h, w in SHAPES:
        v = torch.randn(b, c, h, w, device=device)
        x = torch.randn(b, c, h, w, device=device)
        for label, name, kwargs in variants(c):
            fast, matrix, released = bench(name, kwargs, v, x, args.repeats, args.budget_gib, device)
            print(
                f"{f'{b},{c},{h},{w}':<18} {label:<30} {fast:>9.3f} {matrix:>16} {released:>12}", flush=True
            )


def bench(
    name: str,
    kwargs: dict[str, Any],
    v: torch.Tensor,
    x: torch.Tensor,
    repeats: int,
    budget_gib: float,
    device: str,
) -> tuple[float, str, str]:
    """(fast ms, matrix ms or 'n/a (X GiB)', released ms or '') for one affinity on (v, x)."""
    b, c, h, w = v.shape
    n = h * w
    aff = create_affinity(name, dim=c, hw=(h, w), **kwargs).to(device)
    fast = median_ms(lambda: aff(v, x), repeats, device)
    mb, mc = matrix_dims(name, kwargs, b, c)
    gib = mb * mc * n * n * 4 / 2**30
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
    released = ""
    if name == "axial_shift":
        shift_size, axis = kwargs["shift_size"], kwargs["axis"]
        ms = median_ms(lambda: released_axial_shift(v, shift_size, axis), repeats, device)
        with torch.no_grad():
            assert torch.equal(released_axial_shift(v, shift_size, axis), aff(v, x))
        released = f"{ms:.3f}"
    return fast, matrix, released


if __name__ == "__main__":
    main()
