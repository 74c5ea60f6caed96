"""Trials per hour with 1 and 2 worker processes, on the journal file and on PostgreSQL.

Runs ``affinity search --space shifts.yaml`` (a fresh study each time, same seed and
budget) as a subprocess, as a user would, and times it from start to exit; the rate is
finished trials / wall time. The goal (issue 11): 2 workers >= 1.8x the rate of 1 on a
2-core machine. The load average is printed beside every figure: on a shared machine the
ratio between runs side by side is the figure to read, not the absolute rates.

    python benchmarks/workers.py                  # shifts.yaml, 8 trials per run
    python benchmarks/workers.py --n-trials 30    # the space's own size
    python benchmarks/workers.py --no-postgres    # journal file only

PostgreSQL runs need the server binaries (initdb, pg_ctl) and psycopg; a throwaway server is
started for the run (tests/search/pg_server.py).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _run(storage: str | None, n_jobs: int, n_trials: int, space: str, extra: list[str]) -> tuple[float, int]:
    """Wall seconds of one search and the trials it finished."""
    import optuna

    from affinity.search.study import counted, default_storage_path, open_storage

    out = Path(tempfile.mkdtemp(prefix="affinity-bench-"))
    study = f"bench_{uuid.uuid4().hex[:8]}"
    cmd = [sys.executable, "-c", "from affinity.cli import main; main()", "search", "--space", space,
           "--quiet", "--study", study, "--out", str(out), "--n-trials", str(n_trials),
           "--n-jobs", str(n_jobs), *extra]  # fmt: skip
    if storage is not None:
        cmd += ["--storage", storage]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    start = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, cwd=out)
    wall = time.perf_counter() - start
    store = open_storage(storage, default_storage_path(out, study), create=False)
    done, _ = counted(optuna.load_study(study_name=study, storage=store).get_trials(deepcopy=False))
    return wall, done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--space", default="shifts.yaml")
    parser.add_argument("--n-trials", type=int, default=8)
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
        print(f"{args.space}, {args.n_trials} trials a run, {os.cpu_count()} CPUs")
        head = f"{'storage':<10} {'workers':>7} {'wall s':>8} {'trials':>6} {'trials/h':>9} {'x1':>6}"
        print(f"{head}  load avg (1, 5, 15 min)")
        for name, storage in backends + ([("postgresql", None)] if server else []):
            rates = {}
            for n_jobs in (1, 2):
                url = server.create_database(f"b_{uuid.uuid4().hex[:8]}") if name == "postgresql" else storage
                wall, done = _run(url, n_jobs, args.n_trials, args.space, args.extra)
                rates[n_jobs] = done / wall * 3600
                load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
                ratio = rates[n_jobs] / rates[1]
                row = f"{name:<10} {n_jobs:>7} {wall:>8.1f} {done:>6} {rates[n_jobs]:>9.0f} {ratio:>6.2f}"
                print(f"{row}  {load}")
    finally:
        if server is not None:
            server.stop()


if __name__ == "__main__":
    main()
