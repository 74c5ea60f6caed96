"""Operations one eval forward dispatches on a device other than the CPU, against timm's.

On a GPU each dispatched operation (views aside) launches at least one kernel, and a forward
of many small kernels is bound by their launches: that is how the per-part launches of
8d8595d showed (deit_s at batch 256 on an H200: 7790 kernels against timm's 313). This counts
them without a GPU, on PyTorch's meta device (shapes only, nothing computed), after one
warm-up forward (index plans and masks are built once per map):

    python benchmarks/dispatch_count.py deit_s swin_t as_mlp_t --batch-size 256
"""

from __future__ import annotations

import argparse
import collections
import os
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from affinity._timm import import_timm
from affinity.benchmark import TIMM_NAMES
from affinity.models import create_model

#: operations that only make a view or an uninitialised tensor: no kernel on a GPU
NO_KERNEL = frozenset(
    {
        *("view", "_unsafe_view", "_reshape_alias", "reshape", "flatten", "unflatten", "alias"),
        *("permute", "transpose", "t", "expand", "unsqueeze", "squeeze", "as_strided", "detach"),
        *("slice", "select", "narrow", "split", "split_with_sizes", "unbind", "chunk"),
        *("view_as_real", "view_as_complex", "lift_fresh", "empty", "empty_like", "empty_strided"),
    }
)


class _Count(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.ops: collections.Counter[str] = collections.Counter()

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        name = func.overloadpacket.__name__
        if name not in NO_KERNEL:
            self.ops[name] += 1
        return func(*args, **(kwargs or {}))


def dispatched(model: torch.nn.Module, batch_size: int, img_size: int) -> collections.Counter[str]:
    """Operation name -> calls in one eval forward on the meta device (after a warm-up)."""
    model = model.eval().to("meta")
    x = torch.empty(batch_size, 3, img_size, img_size, device="meta")
    with torch.inference_mode():
        model(x)
        with _Count() as count:
            model(x)
    return count.ops


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="+")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--img-size", type=int, default=224)
    ap.add_argument("--top", type=int, default=6, help="the operations whose counts differ most")
    args = ap.parse_args()
    timm = import_timm()
    print(f"ops dispatched per eval forward, meta device, batch {args.batch_size}, views excluded")
    print(f"{'model':<16} {'affinity':>8} {'timm':>6}  most different (affinity, timm)")
    for name in args.models:
        ours = dispatched(create_model(name, img_size=args.img_size), args.batch_size, args.img_size)
        theirs: collections.Counter[str] = collections.Counter()
        other = TIMM_NAMES.get(name)
        if other is not None and timm is not None:
            reference = timm.create_model(other, img_size=args.img_size)
            theirs = dispatched(reference, args.batch_size, args.img_size)
        names = sorted(set(ours) | set(theirs), key=lambda n: -abs(ours[n] - theirs[n]))[: args.top]
        differ = ", ".join(f"{n} ({ours[n]}, {theirs[n]})" for n in names if ours[n] != theirs[n])
        timm_total = str(sum(theirs.values())) if theirs else "–"
        print(f"{name:<16} {sum(ours.values()):>8} {timm_total:>6}  {differ}")
    print(f"load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
