"""Where a CUDA forward's time goes: torch.profiler's top kernels for affinity's models and
timm's, side by side (the GPU counterpart of the CPU profiles behind issue 15's fixes).

    python benchmarks/gpu_profile.py --models deit_s swin_t as_mlp_t --batch-size 256 [--amp]
"""

from __future__ import annotations

import argparse

import torch
from torch.profiler import ProfilerActivity, profile

from affinity._timm import import_timm
from affinity.benchmark import TIMM_NAMES
from affinity.models import create_model


def _profile(label: str, model: torch.nn.Module, x: torch.Tensor, amp: bool, rows: int) -> None:
    model = model.cuda().eval()
    ctx = torch.autocast("cuda", dtype=torch.float16, enabled=amp)
    with torch.inference_mode(), ctx:
        for _ in range(3):
            model(x)
        torch.cuda.synchronize()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(5):
            model(x)
        end.record()
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            model(x)
            torch.cuda.synchronize()
    kernels = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
    busy = sum(e.device_time for e in kernels) / 1e3
    wall = start.elapsed_time(end) / 5
    print(f"\n## {label}: {wall:.2f} ms/forward, {len(kernels)} kernels, {busy:.2f} ms busy")
    print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=rows, max_name_column_width=70))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", nargs="+", default=["deit_s", "swin_t", "as_mlp_t"])
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--amp", action="store_true")
    ap.add_argument("--rows", type=int, default=12)
    args = ap.parse_args()
    timm = import_timm()
    for name in args.models:
        x = torch.randn(args.batch_size, 3, 224, 224, device="cuda")
        _profile(f"affinity {name}", create_model(name), x, args.amp, args.rows)
        if name in TIMM_NAMES and timm is not None:
            _profile(f"timm {TIMM_NAMES[name]}", timm.create_model(TIMM_NAMES[name]), x, args.amp, args.rows)


if __name__ == "__main__":
    main()
