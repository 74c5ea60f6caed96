"""Wall time of `affinity profile as_mlp_b` (timing included), median of 3 runs.

The acceptance target is under 30 s on the 2-core development machine. Prints each run's
wall time, the median, the machine's load average (other work on the machine stretches wall
time), and the figures the profile reported.

    python benchmarks/profile_as_mlp_b.py [--img-size 224] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="as_mlp_b")
    parser.add_argument("--img-size", type=int, default=224)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    exe = shutil.which("affinity") or os.path.join(os.path.dirname(sys.executable), "affinity")
    cmd = [exe, "profile", args.model, "--img-size", str(args.img_size), "--format", "json"]
    walls = []
    data: dict = {}
    for i in range(args.runs):
        load = os.getloadavg()[0]
        t0 = time.perf_counter()
        out = subprocess.run(cmd, capture_output=True, text=True, check=True)
        wall = time.perf_counter() - t0
        walls.append(wall)
        data = json.loads(out.stdout)
        print(
            f"run {i + 1}: {wall:.1f} s wall (load average {load:.1f}); "
            f"latency median {data['latency_ms']:.0f} ms over {len(data['latency_runs'])} runs"
        )
    print(f"median wall time of {args.runs}: {statistics.median(walls):.1f} s  (target < 30 s)")
    published = data["reference"] and data["reference"]["gflops"]
    print(
        f"{args.model} @ {args.img_size}: {data['params_m']:.2f} M params, {data['gflops']:.2f} GFLOPs "
        f"(published {published}, diff {data['flops_diff_pct']:+.1f}%)"
    )


if __name__ == "__main__":
    main()
