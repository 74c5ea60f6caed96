"""Export every registered variant to ONNX and TorchScript and print size, max |diff|, time.

For each model and format: the file size, the max |exported − PyTorch| over the logits of
one seeded random input (onnxruntime runs the ONNX file, ``torch.jit.load`` the TorchScript
one), the export time and the time to load and run the file once, or the one-line reason
it failed (the op). Untrained weights (seeded): the check is about the graph, not the
values. ``--img-size`` below 224 keeps the run short on a shared machine (the token-tied
models, RepMLPNet, Mixer, ResMLP, S2-MLP, DeiT, are then smaller than at 224: say so beside
the figures). The load average is printed with the table.

    python benchmarks/export.py [--img-size 224] [--formats onnx,torchscript] [--models 'mixer_*']
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch

from affinity.errors import AffinityError
from affinity.export import SUFFIXES, export_model, written_files
from affinity.models import create_model, list_models


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--img-size", type=int, default=224)
    parser.add_argument("--formats", default="onnx,torchscript")
    parser.add_argument(
        "--models", default=None, help="shell patterns over registered names, comma-separated"
    )
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    formats = [f for f in args.formats.split(",") if f]
    print(f"img_size {args.img_size}, batch 1, {args.threads} thread(s), load average {os.getloadavg()}")
    print(f"{'model':<16} {'format':<12} {'MB':>8} {'max |diff|':>11} {'export s':>9} {'check s':>8}  note")
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        patterns = args.models.split(",") if args.models else [None]
        for name in sorted({n for p in patterns for n in list_models(p)}):
            torch.manual_seed(0)
            try:
                model = create_model(name, img_size=args.img_size)
            except AffinityError as exc:
                print(f"{name:<16} {'-':<12} {'':>8} {'':>11} {'':>9} {'':>8}  not built: {exc}")
                continue
            for fmt in formats:
                path = Path(tmp) / f"{name}{SUFFIXES[fmt]}"
                try:
                    r = export_model(model, path, fmt)
                except AffinityError as exc:
                    print(f"{name:<16} {fmt:<12} {'':>8} {'':>11} {'':>9} {'':>8}  FAILED: {exc}", flush=True)
                    continue
                diff = "n/a" if r.max_abs_diff is None else f"{r.max_abs_diff:.1e}"
                print(
                    f"{name:<16} {fmt:<12} {r.size_bytes / 1e6:>8.1f} {diff:>11} {r.export_s:>9.1f} "
                    f"{r.check_s:>8.2f}  {r.runtime}",
                    flush=True,
                )
                for f in written_files(path):
                    f.unlink()
    print(f"total {time.perf_counter() - start:.0f} s, load average {os.getloadavg()}")


if __name__ == "__main__":
    main()
