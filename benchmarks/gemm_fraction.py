"""Models against the machine's GEMM rate, and a commit before a change against the tree after it,
all in one process.

On a shared machine absolute times swing with the load; ratios measured side by side do not.
So for each model this times, interleaved in an order that rotates from one repetition to the
next (GEMM, the model as built by this tree, by ``--before``'s code, timm's model; then this
tree's, ``--before``'s, timm's, GEMM; ...), a 2048² fp32 GEMM and each forward, and prints
medians (``--stat min``: minima; ``--clock cpu``: the thread's CPU time, robust to other
processes taking the cores):

- ``frac``: the model's multiply-adds per second (``affinity.flops``, one forward) over the
  GEMM's, for the old and the new code;
- ``new/old``: the new forward's time over the old one's;
- ``÷timm``: each forward's time over timm's counterpart (when timm is importable and the
  model has one, ``affinity.benchmark.TIMM_NAMES``);
- ``max|diff|``: the largest difference between the old and new logits on the same input
  with the same weights (the change must not change the numbers beyond rounding).

``--before REF`` checks REF out into a ``git worktree`` under ``--worktrees`` (once; reused),
imports its ``affinity`` package, builds its models, then imports this tree's ``affinity`` in
its place (the old models keep their own classes) and builds the same models with the old
ones' weights. Without ``--before`` only this tree is timed.

Like ``affinity benchmark``, the process keeps the memory a forward frees for the next
(``affinity.memory``); ``--glibc-default`` leaves glibc's own thresholds, to compare.

    python benchmarks/gemm_fraction.py [--before REF] [--models as_mlp_t swin_t ...]
        [--batch-size 8] [--repeats 5] [--threads 1] [--no-timm] [--glibc-default]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
MODELS = (
    "as_mlp_t",
    "swin_t",
    "repmlpnet_t224",
    "deit_s",
    "resmlp_s12",
    "mixer_s16",
    "container_light",
)
GEMM_SIDE = 2048


def _worktree(ref: str, base: Path) -> Path:
    """A checkout of ``ref`` (a detached ``git worktree``), made once and reused."""
    sha = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--verify", f"{ref}^{{commit}}"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    path = base / sha[:12]
    if not (path / "affinity" / "__init__.py").exists():
        base.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(path), sha],
            check=True,
            capture_output=True,
        )
    return path


def _drop_affinity_modules() -> None:
    for name in [n for n in sys.modules if n == "affinity" or n.startswith("affinity.")]:
        del sys.modules[name]


def _build_old(tree: Path, names: list[str], img_size: int) -> dict[str, torch.nn.Module]:
    """The models as ``tree``'s code builds them; afterwards ``affinity`` is this tree's again."""
    _drop_affinity_modules()
    sys.path.insert(0, str(tree))
    try:
        import affinity
        from affinity.models import create_model

        assert Path(affinity.__file__).is_relative_to(tree), affinity.__file__
        models: dict[str, torch.nn.Module] = {}
        for name in names:
            torch.manual_seed(0)
            models[name] = create_model(name, img_size=img_size).eval()
    finally:
        sys.path.remove(str(tree))
        _drop_affinity_modules()
    return models


#: ``wall``: elapsed time; ``cpu``: this thread's CPU time, which leaves out the time the
#: thread waited for a core (other processes), only meaningful with ``--threads 1``
CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.thread_time}


def _timed(step: Callable[[torch.Tensor], Any], x: torch.Tensor, clock: Callable[[], float]) -> float:
    t0 = clock()
    step(x)
    return clock() - t0


def _row(name: str, macs: float, batch: int, med: dict[str, float], diff: float | None) -> str:
    """One printed line from the median seconds of ``gemm``, ``new`` and, if timed, ``old``
    and ``timm``; ``macs`` of one image."""
    rate = GEMM_SIDE**3 / med["gemm"]
    batch_macs = macs * batch
    old, new, theirs = med.get("old"), med["new"], med.get("timm")

    def num(value: float | None, width: int, fmt: str) -> str:
        return f"{'-':>{width}}" if value is None else f"{value:>{width}{fmt}}"

    return (
        f"{name:<16}{macs / 1e9:>7.2f}{rate / 1e9:>12.1f}"
        + num(None if old is None else old * 1e3, 9, ".0f")
        + num(new * 1e3, 9, ".0f")
        + num(None if theirs is None else theirs * 1e3, 9, ".0f")
        + num(None if old is None else batch_macs / old / rate, 9, ".3f")
        + num(batch_macs / new / rate, 9, ".3f")
        + num(None if old is None else new / old, 8, ".3f")
        + num(None if old is None or theirs is None else old / theirs, 9, ".3f")
        + num(None if theirs is None else new / theirs, 9, ".3f")
        + num(diff, 11, ".2e")
        + f"{os.getloadavg()[0]:>6.1f}"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--before", help="git ref of the code to compare with (default: none)")
    parser.add_argument("--worktrees", type=Path, default=Path("/tmp/affinity-before"))
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--img-size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-timm", action="store_true", help="do not time timm's models")
    parser.add_argument("--clock", choices=list(CLOCKS), default="wall")
    parser.add_argument("--stat", choices=["median", "min"], default="median")
    parser.add_argument(
        "--glibc-default",
        action="store_true",
        help="leave glibc's adaptive malloc thresholds, as a plain script has them (default: keep "
        "freed memory for reuse, as affinity's commands do: affinity.memory)",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    old: dict[str, torch.nn.Module] = {}
    if args.before:
        old = _build_old(_worktree(args.before, args.worktrees), args.models, args.img_size)
    from affinity.benchmark import TIMM_NAMES, rotated
    from affinity.flops import count_flops
    from affinity.memory import keep_freed_memory
    from affinity.models import create_model

    kept = not args.glibc_default and keep_freed_memory()
    timm = None
    if not args.no_timm:
        from affinity._timm import import_timm

        try:
            timm = import_timm()
        except ImportError:
            print("timm is not importable: no timm columns")

    gen = torch.Generator().manual_seed(0)
    a, b = (torch.randn(GEMM_SIDE, GEMM_SIDE, generator=gen) for _ in range(2))
    out = torch.empty(GEMM_SIDE, GEMM_SIDE)
    print(
        f"fp32 CPU, batch {args.batch_size}, {args.img_size}², {torch.get_num_threads()} thread(s), "
        f"eval forward under inference_mode, {args.stat}s of {args.repeats} interleaved repetitions, "
        f"{args.clock} clock; freed memory {'kept' if kept else 'under the allocator defaults'}; "
        f"before={args.before or '-'}"
    )
    header = (
        f"{'model':<16}{'GMACs':>7}{'gemm GMAC/s':>12}{'old ms':>9}{'new ms':>9}{'timm ms':>9}"
        f"{'old frac':>9}{'new frac':>9}{'new/old':>8}{'old÷timm':>9}{'new÷timm':>9}"
        f"{'max|diff|':>11}{'load':>6}"
    )
    print(header)
    for name in args.models:
        torch.manual_seed(0)
        model = create_model(name, img_size=args.img_size).eval()
        x = torch.randn(args.batch_size, model.in_chans, args.img_size, args.img_size, generator=gen)
        macs = count_flops(model, x[:1]).total
        steps: dict[str, Callable[[torch.Tensor], Any]] = {
            "gemm": lambda _: torch.mm(a, b, out=out),
            "new": model,
        }
        if name in old:
            old[name].load_state_dict(model.state_dict())
            steps["old"] = old[name]
        if timm is not None and name in TIMM_NAMES:
            steps["timm"] = timm.create_model(TIMM_NAMES[name], pretrained=False).eval()
        times: dict[str, list[float]] = {k: [] for k in steps}
        outs: dict[str, torch.Tensor] = {}
        with torch.inference_mode():
            for key, step in steps.items():  # warm-up, and the logits compared
                outs[key] = step(x)
            for i in range(args.repeats):
                for key in rotated(list(steps), i):  # each step in each place of the order
                    times[key].append(_timed(steps[key], x, CLOCKS[args.clock]))
        pick = statistics.median if args.stat == "median" else min
        med = {k: pick(v) for k, v in times.items()}
        diff = (outs["new"] - outs["old"]).abs().max().item() if "old" in outs else None
        print(_row(name, macs, args.batch_size, med, diff), flush=True)


if __name__ == "__main__":
    main()
