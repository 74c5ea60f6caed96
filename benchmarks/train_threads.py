"""`affinity train` with one torch thread (the default now) against torch's own thread count
(the default before), run side by side as subprocesses, alternating, on the same small model.

    python benchmarks/train_threads.py [--epochs 2] [--rounds 2]

Prints each run's wall time with the load average beside it, and the ratio of the medians.
On a shared machine torch's threads spin against the other processes; one thread per process
is what the search does (scale with --n-jobs).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

#: the benchmark model of train_digits.py (a shrunk as_mlp_t)
SMALL_AS_MLP = {"dims": (32, 64, 96, 128), "depths": (1, 1, 2, 1), "patch_sizes": (4, 2, 2, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    default_threads = int(
        subprocess.run(
            [sys.executable, "-c", "import torch; print(torch.get_num_threads())"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    from affinity.models import resolve_model_config
    from affinity.models.config import apply_overrides, save_model_config

    with tempfile.TemporaryDirectory() as tmp:
        model = save_model_config(
            apply_overrides(resolve_model_config("as_mlp_t"), **SMALL_AS_MLP), Path(tmp) / "small.yaml"
        )
        times: dict[int, list[float]] = {default_threads: [], 1: []}
        for r in range(args.rounds):
            for threads in times:
                cmd = [
                    sys.executable,
                    "-m",
                    "affinity.cli",
                    "train",
                    str(model),
                    "--epochs",
                    str(args.epochs),
                ]
                cmd += ["--device", "cpu", "--threads", str(threads), "--quiet", "--out", f"{tmp}/o{threads}"]
                load = os.getloadavg()[0]
                start = time.perf_counter()
                subprocess.run(cmd, check=True, capture_output=True)
                wall = time.perf_counter() - start
                times[threads].append(wall)
                print(
                    f"round {r + 1}: --threads {threads}: {wall:.1f} s wall (load average {load:.2f})",
                    flush=True,
                )
    before, after = statistics.median(times[default_threads]), statistics.median(times[1])
    print(
        f"median: torch's default ({default_threads} threads, the old default) {before:.1f} s, "
        f"1 thread (the new default) {after:.1f} s; ratio {before / after:.2f}"
    )


if __name__ == "__main__":
    main()
