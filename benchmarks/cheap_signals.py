"""Cheap signals at equal wall time: plain search vs pre-screening vs MO-ASHA vs both.

Each mode runs ``affinity search`` (in this process, one worker, ``--threads`` torch threads)
into its own study with the same wall-time budget (``--timeout``: no trial starts after it;
the running one finishes, so every run overshoots by at most one trial, printed as ``wall
s``) and the same study seed per seed index (the same training seeds for a configuration in
every mode), then prints, per mode, ``search_quality.summarise``'s table (median hypervolume,
median regret against the union of every run's front, configurations trained, wall seconds)
and this script's own: full-budget trials (on the front's side), trials stopped by ASHA,
proposals scored only by the proxy, and the seconds spent on the proxy.

Modes (``--modes``): ``plain``; ``prescreen`` (``--prescreen K --proxy P``); ``asha``
(``--fidelity asha --rungs R --eta E``); ``both``. Runs go seed-major (every mode's first seed
before any second seed), so a drift in the machine's load falls on every mode alike, and each
finished run is appended to ``--log`` (JSON lines): ``--summarise LOG`` prints the tables of
an interrupted benchmark.

    python benchmarks/cheap_signals.py --space shifts.yaml --seeds 3 --budget 200 --threads 1
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from search_quality import append_log, common_options, read_log, run_sampler, summarise  # declared once there

MODES = ("plain", "prescreen", "asha", "both")


def mode_args(mode: str, *, prescreen: int, proxy: str, rungs: str, eta: int) -> list[str]:
    """The ``affinity search`` options of ``mode``."""
    screen = ["--prescreen", str(prescreen), "--proxy", proxy]
    asha = ["--fidelity", "asha", "--rungs", rungs, "--eta", str(eta)]
    return {"plain": [], "prescreen": screen, "asha": asha, "both": [*screen, *asha]}[mode]


def run_one(space: str, mode: str, seed: int, options: list[str], budget: float, trials: int, threads: int,
            out: Path, train_seed: int | None = None) -> dict[str, Any]:  # fmt: skip
    """One study of ``mode`` for ``budget`` seconds (or ``trials`` trained trials, whichever
    ends first); the run's figures, with ``sampler`` = the mode (``summarise``'s key).
    ``train_seed`` None: the study seed is ``seed``; else the study seed is ``train_seed`` (the
    training seeds) and the sampler's seed is moved by ``seed`` (as search_quality.py does)."""
    import pandas as pd
    from click.testing import CliRunner

    from affinity.cli import cli

    name = f"{mode}-s{seed}"
    with run_sampler(mode, trials, seed, train_seed) as study_seed:
        args = ["search", "--space", space, "--study", name, "--out", str(out), "--n-trials", str(trials)]
        args += ["--seed", str(study_seed), "--threads", str(threads), "--timeout", str(budget), *options]
        args += ["--n-jobs", "1"]  # in this process: the training cache is patched in here
        start = time.perf_counter()
        res = CliRunner().invoke(cli, args, catch_exceptions=False)
        wall = time.perf_counter() - start
    if res.exit_code != 0:
        raise SystemExit(f"{name}: exit {res.exit_code}: {res.output}")
    board = pd.read_csv(out / name / "leaderboard.csv")
    done = board[(board["state"] == "COMPLETE") & board["val_acc"].notna() & board["gflops"].notna()]
    status = board["status"]
    trained = status.isin(("ok", "stopped"))
    return {
        "sampler": mode,
        "seed": seed,
        "wall_s": wall,
        "distinct": int(board.loc[trained, "config_hash"].nunique()),
        "duplicates": int((status == "duplicate").sum()),
        "full": int((status == "ok").sum()),
        "stopped": int((status == "stopped").sum()),
        "proxy_only": int((status == "proxy_only").sum()),
        "proxy_s": _proxy_seconds(out / name),
        "train_s": float(board["time_train"].sum(skipna=True)),
        "points": [[float(a), float(g)] for a, g in zip(done["val_acc"], done["gflops"])],
        "max_gflops": float(board["gflops"].max()),
        "load": os.getloadavg(),
    }


def _proxy_seconds(folder: Path) -> float:
    """The seconds the study's proposals spent on the proxy (their ``proxy_s`` attributes)."""
    from affinity.search.study import load_study

    study = load_study(folder.name, out=folder.parent)
    return sum(float(t.user_attrs.get("proxy_s", 0.0)) for t in study.get_trials(deepcopy=False))


def cheap_table(runs: list[dict[str, Any]]) -> None:
    """Per mode, medians over its runs: trials trained to the full budget, stopped by ASHA,
    scored by the proxy only, the proxy's seconds and the training seconds."""
    print(
        f"{'mode':<12} {'runs':>4} {'full':>5} {'stopped':>7} {'proxy-only':>10} {'proxy s':>7} "
        f"{'train s':>7}"
    )
    for mode in dict.fromkeys(r["sampler"] for r in runs):
        mine = [r for r in runs if r["sampler"] == mode]

        def med(key: str, mine: list[dict[str, Any]] = mine) -> float:
            return statistics.median(r[key] for r in mine)

        print(
            f"{mode:<12} {len(mine):>4} {med('full'):>5g} {med('stopped'):>7g} {med('proxy_only'):>10g} "
            f"{med('proxy_s'):>7.1f} {med('train_s'):>7.0f}"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # the cap must not end a study before its budget: at load 3, asha trained 60 trials in 79 s
    common_options(ap, trials=300, trials_help="n_trials cap (the budget should end runs first)")
    ap.add_argument("--budget", type=float, default=200, help="wall seconds per study (--timeout)")
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--prescreen", type=int, default=3, help="proposals per trained trial")
    ap.add_argument("--proxy", default="naswot")
    ap.add_argument("--rungs", default="1,3", help="ASHA rungs (epochs; the space's epochs are the last)")
    ap.add_argument("--eta", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=None, help="the full budget (default: the space's)")
    ap.add_argument(
        "--train-seed",
        type=int,
        default=None,
        help="one study seed for every run (the same training seeds; the sampler's seed varies): "
        "the regret then measures the mode, not which seed's training was lucky. Default: each "
        "seed index is its own study seed",
    )
    args = ap.parse_args()
    runs = read_log(args.summarise) if args.summarise else _run(args)
    summarise(runs)
    cheap_table(runs)


def _run(args: argparse.Namespace) -> list[dict[str, Any]]:
    import torch

    from affinity.search.runner import quiet_optuna

    torch.set_num_threads(args.threads)
    quiet_optuna()
    modes = args.modes.split(",")
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        raise SystemExit(f"--modes: {', '.join(unknown)} unknown; allowed: {', '.join(MODES)}")
    runs = []
    print(
        f"{args.space}: {args.seeds} seeds x {args.budget:g} s per study; load {os.getloadavg()}", flush=True
    )
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            for mode in modes:
                options = [] if args.epochs is None else ["--epochs", str(args.epochs)]
                options += mode_args(
                    mode, prescreen=args.prescreen, proxy=args.proxy, rungs=args.rungs, eta=args.eta
                )
                run = run_one(
                    args.space,
                    mode,
                    seed,
                    options,
                    args.budget,
                    args.trials,
                    args.threads,
                    Path(tmp),
                    args.train_seed,
                )
                runs.append(run)
                print(
                    f"  {mode} seed {seed}: {run['full']} full, {run['stopped']} stopped, "
                    f"{run['proxy_only']} proxy-only, {run['wall_s']:.0f} s, load {run['load'][0]:.1f}",
                    file=sys.stderr,
                    flush=True,
                )
                append_log(args.log, run)
    return runs


if __name__ == "__main__":
    main()
