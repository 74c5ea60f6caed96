"""A configuration's val accuracy does not depend on when, where or how it ran (issue 9).

Part 1: five fixed configurations of ``search_spaces/shifts.yaml`` (its own budget: 16×16
digits, 8 epochs) evaluated four ways, each in its own process, and the table of their val
accuracies:

- ``first``: a study that runs them in order (trials 0-4);
- ``reordered``: another study that first runs two other configurations, then the five in
  reverse order (trials 2-6);
- ``n_jobs=2``: a third study, two worker processes;
- ``train file``: ``affinity train FILE`` with no other flag, FILE being the first study's
  ``front/trial_N.yaml`` for a front trial, else the same file written for that trial by
  ``affinity.search.trialfile.write_trial_config``.

Part 2 (``--repeats-cost``): ``affinity search --space shifts.yaml`` with ``--repeats 1`` and
``--repeats 3`` side by side (same trial count), wall time and load average, and how many
points of the ``--repeats 3`` front stay distinguishable from their cheaper neighbour once
the spread is known (mean difference > 2 × the pair's pooled seed standard deviation).

    python benchmarks/reproducibility.py [--out /tmp/repro] [--repeats-cost] [--n-trials 30]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

KIND, SHIFT, DIL = "model.mixer.kind", "model.mixer.shift_size", "model.mixer.dilation"
PAD, CONN = "model.mixer.padding", "model.mixer.connection"
DIMS, RATIO = "model.dims", "model.channel_mlp_ratio"
#: five configurations of shifts.yaml: both kinds, both widths, several shifts and paddings
CONFIGS = [
    {DIMS: "[16, 32]", RATIO: 2, KIND: "spatial_shift"},
    {DIMS: "[16, 32]", RATIO: 1, KIND: "axial_shift", SHIFT: 3, DIL: 1, PAD: "zero", CONN: "parallel"},
    {DIMS: "[32, 64]", RATIO: 2, KIND: "axial_shift", SHIFT: 5, DIL: 2, PAD: "replicate", CONN: "parallel"},
    {DIMS: "[32, 64]", RATIO: 4, KIND: "axial_shift", SHIFT: 3, DIL: 1, PAD: "circular", CONN: "serial"},
    {DIMS: "[32, 64]", RATIO: 1, KIND: "spatial_shift"},
]
#: run before the five in the re-ordered study, so they are trials 2-6 of a process that trained
OTHERS = [
    {DIMS: "[16, 32]", RATIO: 4, KIND: "axial_shift", SHIFT: 7, DIL: 2, PAD: "circular", CONN: "serial"},
    {DIMS: "[32, 64]", RATIO: 1, KIND: "axial_shift", SHIFT: 1, DIL: 1, PAD: "zero", CONN: "parallel"},
]


def _affinity(*args: str) -> float:
    """Run the CLI in a fresh process, in this environment (no thread setting added: the
    search uses one torch thread per worker, ``affinity train`` one by default); returns
    its wall time."""
    start = time.perf_counter()
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    out = subprocess.run([sys.executable, "-m", "affinity.cli", *args], capture_output=True, text=True,
                         env=env, check=False)  # fmt: skip
    if out.returncode != 0:
        raise SystemExit(f"affinity {' '.join(args)} failed ({out.returncode}):\n{out.stderr}")
    return time.perf_counter() - start


def _enqueue(out: Path, name: str, configs: list[dict[str, Any]]) -> None:
    from affinity.search.space import load_space
    from affinity.search.study import create_or_resume, default_storage_path, open_storage

    space = load_space("shifts.yaml")
    storage = open_storage(None, default_storage_path(out, name), create=True)
    study = create_or_resume(name, storage, space, space.settings)
    for params in configs:
        study.enqueue_trial(params)


def _study(out: Path, name: str) -> Any:
    from affinity.search.study import load_study

    return load_study(name, out=out)


def _by_params(out: Path, name: str) -> dict[str, Any]:
    """JSON of the params -> the trial (status ok)."""
    return {
        json.dumps(t.params, sort_keys=True): t
        for t in _study(out, name).trials
        if t.user_attrs.get("status") == "ok"
    }


def _key(params: dict[str, Any]) -> str:
    return json.dumps(params, sort_keys=True)


def part1(out: Path) -> bool:
    from affinity.search.trialfile import write_trial_config

    def search(name: str, configs: list[dict[str, Any]], *args: str) -> None:
        _enqueue(out, name, configs)
        # one worker unless args say otherwise (the last --n-jobs given wins)
        _affinity("search", "--space", "shifts.yaml", "--study", name, "--out", str(out), "--quiet",
                  "--n-trials", str(len(configs)), "--n-jobs", "1", *args)  # fmt: skip

    search("first", CONFIGS)
    search("reordered", [*OTHERS, *reversed(CONFIGS)])
    search("jobs2", CONFIGS, "--n-jobs", "2")
    first, again, jobs2 = (_by_params(out, s) for s in ("first", "reordered", "jobs2"))
    study = _study(out, "first")
    rows = []
    for params in CONFIGS:
        t = first[_key(params)]
        front = out / "first" / "front" / f"trial_{t.number}.yaml"
        if front.is_file():
            file, source = front, f"front/{front.name}"
        else:
            file = write_trial_config(study, t, out / "files" / f"trial_{t.number}.yaml")
            source = f"files/{file.name}"
        run_dir = out / "train" / f"trial_{t.number}"
        _affinity("train", str(file), "--out", str(run_dir), "--quiet")
        trained = json.loads((run_dir / "metrics.json").read_text())["metrics"]["val_acc"]
        rows.append((t, again[_key(params)], jobs2[_key(params)], trained, source))
    print(f"\nshifts.yaml, 5 configurations, val accuracy (load average {_load()}):")
    print(f"{'config':<40} {'hash':<12} {'seed':>10} {'first':>8} {'reordered':>11} {'n_jobs=2':>8} "
          f"{'train':>8}  file")  # fmt: skip
    same = True
    for t, t2, t3, trained, source in rows:
        accs = [t.user_attrs["val_acc"], t2.user_attrs["val_acc"], t3.user_attrs["val_acc"], trained]
        same &= len(set(accs)) == 1
        desc = _describe(t.params)
        print(f"{desc:<40} {t.user_attrs['config_hash']:<12} {t.user_attrs['seed']:>10} {accs[0]:.6f} "
              f"{accs[1]:.6f} #{t2.number} {accs[2]:.6f} {accs[3]:.6f}  {source}")  # fmt: skip
    print(f"all four identical (exact float equality) for every configuration: {same}")
    return same


def _describe(params: dict[str, Any]) -> str:
    shift = "S2" if params[KIND] == "spatial_shift" else "AS"
    kind = shift if shift == "S2" else f"AS s{params[SHIFT]} d{params[DIL]} {params[PAD][:4]}"
    conn = f" {params[CONN][:3]}" if CONN in params else ""
    return f"{kind}{conn} dims {params[DIMS]} r{params[RATIO]}"


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def part2(out: Path, n_trials: int) -> None:
    walls = {}
    for k in (1, 3):
        name = f"repeats{k}"
        before = _load()
        walls[k] = _affinity("search", "--space", "shifts.yaml", "--study", name, "--out", str(out),
                             "--quiet", "--n-trials", str(n_trials), "--repeats", str(k))  # fmt: skip
        print(f"--repeats {k}: {n_trials} trials in {walls[k]:.1f} s wall (load average before {before}, "
              f"after {_load()})")  # fmt: skip
    print(f"cost of --repeats 3 relative to --repeats 1: {walls[3] / walls[1]:.2f}x")
    from affinity.search.leaderboard import build_leaderboard, front_numbers

    for k in (1, 3):
        board = build_leaderboard(_study(out, f"repeats{k}"))
        trained = board[board["status"] == "ok"]
        print(f"--repeats {k}: {len(trained)} configurations trained, front of {len(front_numbers(board))}")
    board = build_leaderboard(_study(out, "repeats3"))
    front = board[board["number"].isin(front_numbers(board))].sort_values("gflops")
    mean_std = float(board.loc[board["status"] == "ok", "val_acc_std"].mean())
    print(f"seed-to-seed std of val accuracy, mean over the configurations trained: {mean_std:.4f}")
    print(f"{'trial':>5} {'MFLOPs':>8} {'mean':>7} {'std':>7}  vs the next cheaper front point")
    kept = 1 if len(front) else 0  # the cheapest point has nothing cheaper to be confused with
    previous = None
    for _, row in front.iterrows():
        note = "cheapest"
        if previous is not None:
            pooled = ((row.val_acc_std**2 + previous.val_acc_std**2) / 2) ** 0.5
            gap = row.val_acc - previous.val_acc
            apart = gap > 2 * pooled
            kept += apart
            note = f"gap {gap:+.4f}, 2 std {2 * pooled:.4f}: {'distinguishable' if apart else 'within noise'}"
        figures = f"{row.gflops * 1e3:>8.3f} {row.val_acc:>7.4f} {row.val_acc_std:>7.4f}"
        print(f"{int(row.number):>5} {figures}  {note}")
        previous = row
    print(f"front points distinguishable from their cheaper neighbour (the cheapest counted): {kept} of "
          f"{len(front)}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="/tmp/affinity_repro", help="results root (emptied first)")
    parser.add_argument("--repeats-cost", action="store_true", help="also run part 2 (minutes)")
    parser.add_argument("--skip-part1", action="store_true")
    parser.add_argument("--n-trials", type=int, default=30, help="trials per study in part 2")
    args = parser.parse_args()
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    ok = True
    if not args.skip_part1:
        ok = part1(out)
    if args.repeats_cost:
        part2(out, args.n_trials)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
