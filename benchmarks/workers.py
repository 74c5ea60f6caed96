"""Trials per hour with 1 and 2 worker processes, on the journal file and on PostgreSQL.

Every run trains the same work: N distinct configurations of the space, drawn once in a
seeded order and enqueued (``search.enqueue``) in a copy of the space file, so 1 and 2
workers train exactly the same models (a sampler would propose other, differently sized ones
to two workers). Each run is ``affinity search`` as a subprocess, as a user would run it, and
two rates are printed: end to end (finished trials / wall time from start to exit, imports and
spawning included) and steady (finished trials / time from the first trial's start to the last
one's end: what a long study sees). The goal (issue 11): 2 workers >= 1.8x the rate of 1 on a
2-core machine. Runs alternate (1, 2, 2, 1, ...) so a drift of the machine's load falls on both;
the load average is printed beside every figure: on a shared machine the ratio between runs
side by side is the figure to read, not the absolute rates.

    python benchmarks/workers.py                  # shifts.yaml, 12 trials per run
    python benchmarks/workers.py --rounds 2       # 1, 2, 2, 1 workers, twice
    python benchmarks/workers.py --no-postgres    # journal file only

PostgreSQL runs need the server binaries (initdb, pg_ctl) and psycopg; a throwaway server is
started for the run (tests/search/pg_server.py).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def _workload(space: str, n: int, seed: int, folder: Path) -> Path:
    """A copy of ``space``'s file that enqueues ``n`` distinct configurations (seeded order)."""
    import yaml

    from affinity.search.space import load_space, resolve_space_path
    from affinity.search.study import configurations

    loaded = load_space(space)
    found = configurations(loaded, loaded.settings.img_size, seed=seed)
    if found is None:
        raise SystemExit(f"{space}: its configurations cannot be listed (a continuous parameter)")
    designs = found[:n]
    if len(designs) < n:
        raise SystemExit(f"{space} holds {len(designs)} distinct configurations, fewer than --n-trials {n}")
    doc = yaml.safe_load(resolve_space_path(space).read_text())
    doc.setdefault("search", {})["enqueue"] = designs
    path = folder / "workload.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def _run(storage: str | None, n_jobs: int, n_trials: int, space: Path, extra: list[str]) -> dict[str, float]:
    """One search: wall seconds, finished trials, the span from first start to last end, the
    CPU seconds of all its processes (workers, parent, fork server; not the database's) and
    the tail (one worker idle, the other finishing its last trial)."""
    import optuna

    from affinity.search.study import counted, default_storage_path, open_storage

    out = Path(tempfile.mkdtemp(prefix="affinity-bench-"))
    study = f"bench_{uuid.uuid4().hex[:8]}"
    cmd = [sys.executable, "-c", "from affinity.cli import main; main()", "search", "--space", str(space),
           "--quiet", "--study", study, "--out", str(out), "--n-trials", str(n_trials),
           "--n-jobs", str(n_jobs), *extra]  # fmt: skip
    if storage is not None:
        cmd += ["--storage", storage]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, cwd=out)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    store = open_storage(storage, default_storage_path(out, study), create=False)
    trials = optuna.load_study(study_name=study, storage=store).get_trials(deepcopy=False)
    done, _ = counted(trials)
    starts = [t.datetime_start for t in trials if t.datetime_start is not None]
    ends = [t.datetime_complete for t in trials if t.datetime_complete is not None]
    span = (max(ends) - min(starts)).total_seconds()
    last: dict[Any, Any] = {}  # each worker's last trial end
    for t in trials:
        if t.datetime_complete is not None:
            worker = t.user_attrs.get("worker")
            last[worker] = max(last.get(worker, t.datetime_complete), t.datetime_complete)
    # the tail: seconds between the first worker running out of trials and the last one's end
    # (inside the steady span; with few trials, one trial's length)
    tail = (max(ends) - min(last.values())).total_seconds()
    return {"wall": wall, "done": done, "span": span, "cpu": cpu, "tail": tail}


def _rate(runs: list[dict[str, float]], key: str) -> float:
    """The median of finished trials per hour over ``key`` (wall: end to end; span: steady)."""
    return statistics.median(r["done"] / r[key] for r in runs) * 3600


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--space", default="shifts.yaml")
    parser.add_argument("--n-trials", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0, help="the order the configurations are drawn in")
    parser.add_argument("--rounds", type=int, default=1, help="each round runs 1, 2, 2, 1 workers")
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("extra", nargs="*", help="more `affinity search` options (after --)")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    backends: list[tuple[str, str | None]] = [("journal", None)]
    server = None
    if not args.no_postgres:
        from tests.search.pg_server import HOW_TO_GET, PostgresServer, find_bindir

        bindir = find_bindir()
        if bindir is None:
            print(f"PostgreSQL skipped: {HOW_TO_GET}")
        else:
            server = PostgresServer(bindir).start()
    try:
        folder = Path(tempfile.mkdtemp(prefix="affinity-bench-"))
        space = _workload(args.space, args.n_trials, args.seed, folder)
        print(f"{args.space}: the same {args.n_trials} enqueued configurations every run (seed {args.seed}), "
              f"{os.cpu_count()} CPUs, rounds {args.rounds}")  # fmt: skip
        print(f"{'storage':<10} {'workers':>7} {'wall s':>7} {'trials':>6} {'e2e/h':>6} {'steady s':>8} "
              f"{'steady/h':>8} {'cpu s':>6} {'tail s':>6}  load avg (1, 5, 15 min)")  # fmt: skip
        for name, storage in backends + ([("postgresql", None)] if server else []):
            runs: dict[int, list[dict[str, float]]] = {1: [], 2: []}
            for n_jobs in [1, 2, 2, 1] * args.rounds:
                url = (
                    server.create_database(f"b_{uuid.uuid4().hex[:8]}")
                    if server and name == "postgresql"
                    else storage
                )
                r = _run(url, n_jobs, args.n_trials, space, args.extra)
                runs[n_jobs].append(r)
                load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
                print(f"{name:<10} {n_jobs:>7} {r['wall']:>7.1f} {r['done']:>6} {_rate([r], 'wall'):>6.0f} "
                      f"{r['span']:>8.1f} {_rate([r], 'span'):>8.0f} {r['cpu']:>6.1f} {r['tail']:>6.1f}  "
                      f"{load}", flush=True)  # fmt: skip
            e2e, steady = (_rate(runs[2], key) / _rate(runs[1], key) for key in ("wall", "span"))
            cpu = statistics.median(r["cpu"] for r in runs[2]) / statistics.median(r["cpu"] for r in runs[1])
            print(f"{name}: 2 workers / 1 worker = {e2e:.2f}x end to end, {steady:.2f}x steady (medians); "
                  f"CPU seconds {cpu:.2f}x (what the second worker costs over the same trials: the bound "
                  "on a machine with 2 idle cores is about 2 / that)")  # fmt: skip
    finally:
        if server is not None:
            server.stop()


if __name__ == "__main__":
    main()
