"""Search quality per sampler: the same space, the same number of trials, several seeds.

For each sampler and seed it runs ``affinity search`` (in this process, one worker,
``--threads`` torch threads) into its own study, then prints per sampler:

- ``median HV``: the median hypervolume of the (max val_acc, min GFLOPs) front;
- ``median regret``: the median of (HV of the union of every run's front − the run's HV),
  absolute and as a fraction of the union's HV;
- ``distinct``: the median number of distinct configurations trained (``config_hash`` of
  the trials that are not duplicates), ``dups``: the median number of duplicate proposals;
- ``wall s``: the median wall time of a study.

Every study is scored at one reference point: val_acc 0 and 1.1 × the largest GFLOPs costed
in any run (printed). Each finished run is appended to ``--log`` (JSON lines) as it ends,
so an interrupted benchmark can be summarised: ``--summarise LOG``.

Samplers: ``tpe`` (the default: multivariate, group, constant liar), ``nsga2``, ``random``,
``qmc``, and ``tpe-indep`` (independent TPE, no constant liar), ``tpe-startup`` (the default
with n_startup_trials = n_trials // 2).

    python benchmarks/search_quality.py --space shifts.yaml --seeds 3 --trials 30 --threads 1
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

SAMPLERS = ("tpe", "random", "nsga2", "qmc", "tpe-startup", "tpe-indep")


def _variant(name: str, n_trials: int) -> Any:
    """A ``make_sampler`` for the TPE variants (the study module's own for the rest)."""
    import optuna

    from affinity.search import study as study_mod

    base = study_mod.make_sampler
    if name not in ("tpe-indep", "tpe-startup"):
        return base

    def make(settings: Any, space: Any, *, seed: int) -> Any:
        if name == "tpe-indep":
            return optuna.samplers.TPESampler(seed=seed, n_startup_trials=max(2, min(10, n_trials // 3)))
        startup = max(2, n_trials // 2)
        return optuna.samplers.TPESampler(
            seed=seed, multivariate=True, group=True, constant_liar=True, n_startup_trials=startup
        )

    return make


def run_one(space: str, sampler: str, seed: int, trials: int, threads: int, out: Path) -> dict[str, Any]:
    import pandas as pd
    from click.testing import CliRunner

    from affinity.cli import cli
    from affinity.search import study as study_mod

    name = f"{sampler}-s{seed}"
    base = study_mod.make_sampler
    study_mod.make_sampler = _variant(sampler, trials)
    try:
        start = time.perf_counter()
        args = ["search", "--space", space, "--study", name, "--out", str(out), "--n-trials", str(trials)]
        args += ["--sampler", "tpe" if sampler.startswith("tpe") else sampler, "--seed", str(seed)]
        args += ["--threads", str(threads), "--quiet"]
        res = CliRunner().invoke(cli, args, catch_exceptions=False)
        wall = time.perf_counter() - start
    finally:
        study_mod.make_sampler = base
    if res.exit_code != 0:
        raise SystemExit(f"{name}: exit {res.exit_code}: {res.output}")
    board = pd.read_csv(out / name / "leaderboard.csv")
    done = board[(board["state"] == "COMPLETE") & board["val_acc"].notna() & board["gflops"].notna()]
    return {
        "sampler": sampler,
        "seed": seed,
        "wall_s": wall,
        "distinct": int(board.loc[board["status"] != "duplicate", "config_hash"].nunique()),
        "duplicates": int((board["status"] == "duplicate").sum()),
        "points": [[float(a), float(g)] for a, g in zip(done["val_acc"], done["gflops"])],
        "max_gflops": float(board["gflops"].max()),
        "load": os.getloadavg(),
    }


def summarise(runs: list[dict[str, Any]]) -> None:
    from affinity.search.hypervolume import REF_MARGIN, hypervolume

    ref = REF_MARGIN * max(r["max_gflops"] for r in runs)
    union = hypervolume([tuple(p) for r in runs for p in r["points"]], ref)
    print(f"reference point: val_acc 0, {ref:.4g} GFLOPs; union front HV {union:.5g}")
    print(f"{'sampler':<12} {'runs':>4} {'median HV':>10} {'regret':>8} {'regret %':>8} "
          f"{'distinct':>8} {'dups':>5} {'wall s':>7}")  # fmt: skip
    for sampler in dict.fromkeys(r["sampler"] for r in runs):
        mine = [r for r in runs if r["sampler"] == sampler]
        hvs = [hypervolume([tuple(p) for p in r["points"]], ref) for r in mine]
        hv = statistics.median(hvs)
        regret = statistics.median(union - h for h in hvs)
        print(
            f"{sampler:<12} {len(mine):>4} {hv:>10.5g} {regret:>8.3g} {100 * regret / union:>7.2f}% "
            f"{statistics.median(r['distinct'] for r in mine):>8g} "
            f"{statistics.median(r['duplicates'] for r in mine):>5g} "
            f"{statistics.median(r['wall_s'] for r in mine):>7.0f}"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--space", default="shifts.yaml")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument(
        "--first-seed", type=int, default=0, help="seeds FIRST .. FIRST+SEEDS-1 (to add to a log)"
    )
    ap.add_argument("--trials", type=int, default=30)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--samplers", default=",".join(SAMPLERS))
    ap.add_argument("--log", default=None, help="JSON lines, one per finished run (appended).")
    ap.add_argument("--summarise", default=None, metavar="LOG", help="Only summarise a log's runs.")
    args = ap.parse_args()
    if args.summarise:
        summarise([json.loads(line) for line in Path(args.summarise).read_text().splitlines() if line])
        return
    import torch

    from affinity.search.runner import quiet_optuna

    torch.set_num_threads(args.threads)
    quiet_optuna()
    samplers = args.samplers.split(",")
    runs = []
    print(f"{args.space}: {args.seeds} seeds x {args.trials} trials; load {os.getloadavg()}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(
            args.first_seed, args.first_seed + args.seeds
        ):  # seed-major: a partial run has every sampler's first seeds
            for sampler in samplers:
                run = run_one(args.space, sampler, seed, args.trials, args.threads, Path(tmp))
                runs.append(run)
                print(
                    f"  {sampler} seed {seed}: {run['distinct']} distinct, {run['duplicates']} dups, "
                    f"{run['wall_s']:.0f} s, load {run['load'][0]:.1f}",
                    file=sys.stderr,
                    flush=True,
                )
                if args.log:
                    with open(args.log, "a", encoding="utf-8") as fh:
                        fh.write(json.dumps(run) + "\n")
    summarise(runs)


if __name__ == "__main__":
    main()
