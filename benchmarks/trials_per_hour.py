"""Trials per hour of ``affinity search``: a baseline commit against the current tree, side by side.

The baseline (default: 9f54840, the main this work branched from) is checked out in a
``git worktree`` under /tmp and imported from there (``PYTHONPATH``; ``affinity.__file__`` is
checked before timing); the current tree is this checkout. They run alternately (A, B, A, B,
...), each a fresh study of the same space, seed and ``--n-trials``, one worker (the current
tree: ``--n-jobs``), one torch thread each, as a subprocess timed from start to exit, with
the load average beside every run: on a shared machine the ratio of runs side by side is the figure to read.

Printed: trials/hour of each run and of each side (trials / wall time, startup included;
and per worker, trials / the trials' own durations, ``duration_s`` of the leaderboard,
startup excluded), trials per CPU hour (trials / the search process's user + system CPU seconds,
startup included: the figure other processes on a shared machine disturb least, since a
run's wall time also counts the time it waited for a core), minor page faults per trial,
the ratios B / A, whether both
sides got the same val accuracy for every configuration they both evaluated (same seeds:
numerical results must not change), and where a trial's time goes on each side, from one
extra cProfile'd run per side mapped on the search's phases (the same method for both, so
the shares compare; profiling inflates the Python-heavy phases). The current tree also
records its phases itself (``time_*`` columns); their shares over its timed runs are printed
too.

    python benchmarks/trials_per_hour.py                      # 2 rounds of 12 trials
    python benchmarks/trials_per_hour.py --rounds 3 --n-trials 30
    python benchmarks/trials_per_hour.py --no-profile         # rates only
    python benchmarks/trials_per_hour.py --n-jobs auto        # the current tree with a worker per core

With ``--n-jobs J`` (a number or ``auto``) the current tree runs J worker processes and the
baseline keeps its default, one: what a user of each gets on this machine. Both sides then
train the same ``--n-trials`` configurations, drawn once in a seeded order and enqueued in
the space's copy (``workers.py``'s workload), since a sampler proposes other configurations
to concurrent workers.
"""

from __future__ import annotations

import argparse
import os
import pstats
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: phase -> the functions (file suffix, function name) whose cumulative time is that phase,
#: in the baseline and in the current tree alike (``affinity.search.timing`` says what each is)
PROFILE_PHASES = {
    "ask": [("search/_worker.py", "_ask")],
    "sample": [("search/_sampling.py", "sample"), ("search/objective.py", "_find_duplicate")],
    "build": [("search/objective.py", "seeded_model")],
    "flops": [("affinity/flops.py", "count_flops"), ("affinity/flops.py", "count_params")],
    "train": [("train/loop.py", "train")],  # minus eval, below
    "eval": [("train/loop.py", "evaluate")],
    "latency": [("search/objective.py", "cpu_latency_ms")],
    "tell": [("search/_worker.py", "_tell")],
    "leaderboard": [("search/leaderboard.py", "write_outputs"), ("search/_display.py", "summarise")],
}
CLI = "from affinity.cli import main; main()"


def _env(tree: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1"}


def _check_import(tree: Path) -> str:
    """The ``affinity`` package the runs of ``tree`` import; it must be ``tree``'s own."""
    out = subprocess.run(
        [sys.executable, "-c", "import affinity; print(affinity.__file__)"],
        env=_env(tree), capture_output=True, text=True, check=True, cwd=tree,
    ).stdout.strip()  # fmt: skip
    if not Path(out).resolve().is_relative_to(tree.resolve()):
        sys.exit(f"trials_per_hour: {tree} imports affinity from {out}, not from itself")
    return out


def _worktree(commit: str) -> Path:
    """A detached worktree of ``commit`` under /tmp (made once, reused)."""
    sha = subprocess.run(
        ["git", "rev-parse", "--short", commit], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()
    path = Path(tempfile.gettempdir()) / f"affinity-baseline-{sha}"
    if not (path / "affinity" / "__init__.py").is_file():
        subprocess.run(["git", "worktree", "add", "--detach", str(path), sha], cwd=ROOT, check=True,
                       capture_output=True)  # fmt: skip
    return path


def _search(
    tree: Path,
    out: Path,
    args: argparse.Namespace,
    profile: Path | None = None,
    n_jobs: str = "1",
    sampler: str = "tpe",
) -> tuple[float, float, int]:
    """Run one search of ``tree`` into ``out`` with ``n_jobs`` workers; its wall seconds, CPU
    seconds (all its processes) and minor page faults."""
    cmd = [sys.executable, "-c", CLI]
    if profile is not None:
        cmd = [sys.executable, "-m", "cProfile", "-o", str(profile), "-m", "affinity.cli"]
    cmd += ["search", "--space", str(args.space), "--quiet", "--out", str(out), "--study", "bench",
            "--n-trials", str(args.n_trials), "--n-jobs", n_jobs, "--threads", "1",
            "--seed", str(args.seed), "--sampler", sampler]  # fmt: skip
    # one sampler both sides (shifts.yaml's is ehvi now, the baseline's tpe): the same
    # configurations; the space file says tpe too (``_tpe_space``)
    if args.epochs is not None:
        cmd += ["--epochs", str(args.epochs)]
    start, (cpu, faults) = time.perf_counter(), _children_usage()
    subprocess.run(cmd, env=_env(tree), cwd=tree, check=True, stdout=subprocess.DEVNULL)
    cpu_end, faults_end = _children_usage()
    return time.perf_counter() - start, cpu_end - cpu, faults_end - faults


def _tpe_space(space: Path, work: Path) -> Path:
    """A copy of ``space`` in ``work`` whose ``search.sampler`` is tpe: a baseline older than
    the space's sampler (9f54840 and ehvi) rejects the file before it reads ``--sampler``."""
    import yaml

    doc = yaml.safe_load(space.read_text())
    doc.setdefault("search", {})["sampler"] = "tpe"
    out = work / space.name
    out.write_text(yaml.safe_dump(doc, sort_keys=False))
    return out


def _children_usage() -> tuple[float, int]:
    """CPU seconds (user + system) and minor page faults of the finished child processes."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime, usage.ru_minflt


def _board(out: Path):  # type: ignore[no-untyped-def]
    import pandas as pd

    return pd.read_csv(out / "bench" / "leaderboard.csv")


def _profile_shares(path: Path) -> dict[str, float]:
    """Seconds per phase from a cProfile dump (cumulative times of the phases' functions)."""
    stats = pstats.Stats(str(path)).stats  # type: ignore[attr-defined]
    seconds = dict.fromkeys(PROFILE_PHASES, 0.0)
    for phase, funcs in PROFILE_PHASES.items():
        for (file, _, name), (_, _, _, cumulative, _) in stats.items():
            if any(file.endswith(f) and name == n for f, n in funcs):
                seconds[phase] += cumulative
    seconds["train"] -= seconds["eval"]
    return seconds


def _shares(seconds: dict[str, float]) -> str:
    whole = sum(seconds.values()) or 1.0
    parts = sorted(seconds.items(), key=lambda kv: -kv[1])
    return ", ".join(f"{p} {100 * s / whole:.1f}%" for p, s in parts)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--baseline", default="9f54840", help="the commit to compare with (default 9f54840)")
    parser.add_argument("--space", type=Path, default=ROOT / "search_spaces" / "shifts.yaml")
    parser.add_argument("--n-trials", type=int, default=12)
    parser.add_argument("--epochs", type=int, default=None, help="default: the space's")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rounds", type=int, default=2, help="A, B pairs (at least 2)")
    parser.add_argument("--no-profile", action="store_true", help="skip the cProfile'd runs")
    parser.add_argument("--n-jobs", default="1", help="the current tree's workers, a number or auto "
                        "(default 1; the baseline runs one); not 1: both sides train enqueued "
                        "configurations")  # fmt: skip
    parser.add_argument("--sampler", default="tpe", help="the current tree's sampler (default tpe, as the "
                        "baseline's); with --n-jobs not 1 the trials are enqueued, so it only decides "
                        "whether workers wait for each other (ehvi: affinity.search.ehvi's lag)")  # fmt: skip
    args = parser.parse_args()
    args.space = args.space.resolve()
    if args.rounds < 2:
        parser.error("--rounds: at least 2")
    base = _worktree(args.baseline)
    sides = {"A": base, "B": ROOT}
    for label, tree in sides.items():
        print(f"{label}: {tree} imports {_check_import(tree)}")
    work = Path(tempfile.mkdtemp(prefix="affinity-tph-"))
    if args.n_jobs != "1":
        sys.path.insert(0, str(ROOT / "benchmarks"))
        from workers import _workload

        args.space = _workload(str(args.space), args.n_trials, args.seed, work)
    args.space = _tpe_space(args.space, work)
    jobs = {"A": "1", "B": args.n_jobs}
    print(f"space {args.space}, {args.n_trials} trials, seed {args.seed}, workers A 1, B {args.n_jobs}, "
          f"1 thread each, B's sampler {args.sampler}; outputs in {work}")  # fmt: skip
    wall = {"A": 0.0, "B": 0.0}
    inside = {"A": 0.0, "B": 0.0}
    cpu = {"A": 0.0, "B": 0.0}
    boards = {"A": [], "B": []}
    for r in range(args.rounds):
        for label, tree in sides.items():
            load = os.getloadavg()
            out = work / f"{label}{r}"
            sampler = args.sampler if label == "B" else "tpe"
            seconds, cpu_s, faults = _search(tree, out, args, n_jobs=jobs[label], sampler=sampler)
            board = _board(out)
            boards[label].append(board)
            trial_s = float(board["duration_s"].sum())
            wall[label] += seconds
            inside[label] += trial_s
            cpu[label] += cpu_s
            print(f"round {r + 1} {label}: {seconds:7.1f} s wall, {3600 * args.n_trials / seconds:6.0f} "
                  f"trials/h ({3600 * args.n_trials / trial_s:6.0f} per worker without startup); "
                  f"{cpu_s:6.1f} CPU s, "
                  f"{3600 * args.n_trials / cpu_s:6.0f} trials/CPU h, "
                  f"{faults / args.n_trials:6.0f} page faults/trial; "
                  f"load before {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}", flush=True)  # fmt: skip
    n = args.n_trials * args.rounds
    rate = {k: 3600 * n / wall[k] for k in wall}
    rate_in = {k: 3600 * n / inside[k] for k in inside}
    rate_cpu = {k: 3600 * n / cpu[k] for k in cpu}
    for k, name in (("A", args.baseline), ("B", "this tree")):
        print(f"{k} ({name}): {rate[k]:.0f} trials/h ({rate_in[k]:.0f} per worker without startup), "
              f"{rate_cpu[k]:.0f} trials/CPU h")  # fmt: skip
    print(f"ratio B/A: {rate['B'] / rate['A']:.2f} "
          f"({rate_in['B'] / rate_in['A']:.2f} per worker without startup), "
          f"per CPU hour {rate_cpu['B'] / rate_cpu['A']:.2f}; "
          f"load now {' '.join(f'{x:.2f}' for x in os.getloadavg())}")  # fmt: skip
    _compare_accuracy(boards)
    import pandas as pd

    from affinity.search.timing import COLUMNS

    timed = pd.concat(boards["B"])
    recorded = {c.removeprefix("time_"): float(timed[c].sum()) for c in COLUMNS}
    print(f"B's own phase times (time_* columns, {len(boards['B'])} runs): {_shares(recorded)}")
    if args.no_profile:
        return
    for label, tree in sides.items():
        prof = work / f"{label}.prof"
        load = os.getloadavg()
        _search(tree, work / f"{label}_prof", args, profile=prof)
        shares = _shares(_profile_shares(prof))
        print(f"{label} phases (cProfile, load before {load[0]:.2f}): {shares}", flush=True)


def _compare_accuracy(boards: dict[str, list]) -> None:  # type: ignore[type-arg]
    """Same seeds, same configuration: the val accuracy must be the same on both sides."""
    acc: dict[str, dict[str, float]] = {}
    for label, runs in boards.items():
        acc[label] = {}
        for board in runs:
            ok = board[board["status"] == "ok"]
            acc[label].update(zip(ok["config_hash"], ok["val_acc"]))
    shared = sorted(set(acc["A"]) & set(acc["B"]))
    differ = [h for h in shared if acc["A"][h] != acc["B"][h]]
    print(f"val accuracy of the {len(shared)} configurations both sides trained: "
          f"{'identical' if not differ else f'{len(differ)} differ: ' + ', '.join(differ)}")  # fmt: skip


if __name__ == "__main__":
    main()
