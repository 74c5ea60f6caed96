"""A study's leaderboard: one row per trial, Pareto ranks, and the front's model configs.

Columns of ``build_leaderboard`` (and of ``leaderboard.csv``), in order:

- ``number``: the Optuna trial number.
- ``state``: COMPLETE | PRUNED | FAIL | RUNNING (Optuna's state).
- ``status``: ok | duplicate | over_budget | pruned | rejected | interrupted | error |
  stopped (``--fidelity asha``) | proxy_only (``--prescreen``): see ``study.STATUSES``.
- ``val_acc``: val accuracy (fraction) after the last epoch (the last reported one when pruned);
  with several training seeds (``--repeats``), their mean.
- ``val_acc_mean``, ``val_acc_std``, ``n_seeds``: the mean (= ``val_acc``) and sample standard
  deviation of the val accuracy over the ``n_seeds`` training seeds (std empty for one seed).
- ``gflops``: fvcore GFLOPs of one image (one multiply-add = one FLOP).
- ``params_m``: parameters, millions.
- ``latency_ms``: CPU latency at batch 1, one thread, median of 5 runs.
- ``pareto_rank``: 1 = on the front; non-dominated sorting of the COMPLETE trials,
  maximising ``val_acc`` and minimising ``gflops``; empty for other trials.
- ``dominated_by``: how many COMPLETE trials dominate this one (0 on the front).
- ``duration_s``: wall time of the trial.
- ``config_hash``: 12 hex digits of the model configuration (duplicates share it).
- ``duplicate_of``: the trial whose result a duplicate reuses.
- ``reason``: why a trial was over budget, rejected, pruned, stopped or interrupted.
- ``rung``: the epochs a trial stopped by ``--fidelity asha`` trained (its ``val_acc`` is
  the accuracy there); empty for the others.
- ``proxy_score``: the ``--prescreen`` proxy's score of the proposal (trained or proxy-only).
- ``time_ask``, ``time_sample``, ``time_build``, ``time_flops``, ``time_train``, ``time_eval``,
  ``time_latency``, ``time_tell``, ``time_leaderboard``: the seconds the trial spent in each
  phase (``affinity.search.timing`` says what each covers); empty for a trial that recorded
  none (running, interrupted).
- then one column per searched parameter, named by its key path (``model.mixer.shift_size``);
  empty where a conditional parameter did not exist in that trial.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from affinity._io import atomic_write_text
from affinity.search import timing

if TYPE_CHECKING:
    import optuna
    import pandas as pd

__all__ = [
    "COLUMNS",
    "build_leaderboard",
    "front_numbers",
    "pareto_ranks",
    "trial_accuracy",
    "write_outputs",
]

COLUMNS = (
    "number",
    "state",
    "status",
    "val_acc",
    "val_acc_mean",
    "val_acc_std",
    "n_seeds",
    "gflops",
    "params_m",
    "latency_ms",
    "pareto_rank",
    "dominated_by",
    "duration_s",
    "config_hash",
    "duplicate_of",
    "reason",
    "rung",
    "proxy_score",
    *timing.COLUMNS,
)


def _finite(x: Any) -> bool:
    return x is not None and isinstance(x, (int, float)) and math.isfinite(x)


def trial_accuracy(trial: optuna.trial.FrozenTrial) -> float | None:
    """A trial's val accuracy: its ``val_acc`` attribute (set for every trial the search
    trained, pruned ones included), else its first objective value; ``None`` when neither."""
    acc = trial.user_attrs.get("val_acc")
    if acc is None and trial.values:
        acc = trial.values[0]
    return None if acc is None else float(acc)


def pareto_ranks(acc: Sequence[float], gflops: Sequence[float]) -> tuple[list[int], list[int]]:
    """Non-dominated sorting, maximising ``acc`` and minimising ``gflops``.

    Point a dominates b when it is at least as good on both and strictly better on one.

    Returns:
        ``(ranks, dominated_by)``: rank 1 is the front, rank k the front once ranks < k are
        removed; ``dominated_by[i]`` counts the points that dominate point i.
    """
    n = len(acc)

    def dominates(a: int, b: int) -> bool:
        return acc[a] >= acc[b] and gflops[a] <= gflops[b] and (acc[a] > acc[b] or gflops[a] < gflops[b])

    dominated_by = [sum(dominates(j, i) for j in range(n) if j != i) for i in range(n)]
    ranks = [0] * n
    left = set(range(n))
    rank = 1
    while left:
        front = {i for i in left if not any(dominates(j, i) for j in left if j != i)}
        for i in front:
            ranks[i] = rank
        left -= front
        rank += 1
    return ranks, dominated_by


def build_leaderboard(study: optuna.Study) -> pd.DataFrame:
    """One row per trial of ``study`` (columns: see the module docstring), best first.

    Sorted by Pareto rank, then val accuracy (descending), GFLOPs, trial number; trials
    without a rank follow.
    """
    import pandas as pd

    trials = study.get_trials(deepcopy=False)
    params: list[str] = []
    for t in trials:
        for name in t.params:
            if name not in params:
                params.append(name)
    rows = []
    for t in trials:
        attrs = t.user_attrs
        acc = trial_accuracy(t)
        duration = None
        if t.datetime_start is not None and t.datetime_complete is not None:
            duration = (t.datetime_complete - t.datetime_start).total_seconds()
        row: dict[str, Any] = {
            "number": t.number,
            "state": t.state.name,
            "status": attrs.get("status", "running" if t.state.name == "RUNNING" else ""),
            "val_acc": acc,
            "val_acc_mean": acc,
            "val_acc_std": attrs.get("val_acc_std"),
            "n_seeds": attrs.get("n_seeds", None if acc is None else 1),
            "gflops": attrs.get("gflops"),
            "params_m": attrs.get("params_m"),
            "latency_ms": attrs.get("latency_ms"),
            "pareto_rank": None,
            "dominated_by": None,
            "duration_s": duration,
            "config_hash": attrs.get("config_hash"),
            "duplicate_of": attrs.get("duplicate_of"),
            "reason": attrs.get("reason"),
            "rung": attrs.get("rung"),
            "proxy_score": attrs.get("proxy_score"),
            **timing.row_times(attrs),
        }
        for name in params:
            row[name] = t.params.get(name)
        rows.append(row)
    board = pd.DataFrame(rows, columns=[*COLUMNS, *params])
    done = [
        i
        for i, r in enumerate(rows)
        if r["state"] == "COMPLETE" and _finite(r["val_acc"]) and _finite(r["gflops"])
    ]
    ranks, dominated = pareto_ranks([rows[i]["val_acc"] for i in done], [rows[i]["gflops"] for i in done])
    rank_of = dict(zip(done, ranks))
    dominated_of = dict(zip(done, dominated))
    board["pareto_rank"] = pd.array([rank_of.get(i) for i in range(len(rows))], dtype="Int64")
    board["dominated_by"] = pd.array([dominated_of.get(i) for i in range(len(rows))], dtype="Int64")
    board["duplicate_of"] = board["duplicate_of"].astype("Int64")
    for name in params:  # keep ints as ints where a conditional parameter is missing (no 3.0)
        board[name] = pd.Series([r[name] for r in rows], dtype=object)
    board["n_seeds"] = board["n_seeds"].astype("Int64")
    board["rung"] = board["rung"].astype("Int64")
    floats = ("val_acc", "val_acc_mean", "val_acc_std", "gflops", "params_m", "latency_ms", "duration_s",
              "proxy_score")  # fmt: skip
    for col in (*floats, *timing.COLUMNS):
        board[col] = pd.to_numeric(board[col], errors="coerce").astype(float)
    if len(board):
        board = board.sort_values(
            ["pareto_rank", "val_acc", "gflops", "number"],
            ascending=[True, False, True, True],
            na_position="last",
            kind="mergesort",
        ).reset_index(drop=True)
    return board


def front_numbers(board: pd.DataFrame) -> list[int]:
    """Trials on the Pareto front, without duplicates of an earlier front trial."""
    on = board[(board["pareto_rank"] == 1) & (board["status"] != "duplicate")]
    return [int(n) for n in on["number"]]


def write_outputs(study: optuna.Study, folder: str | Path) -> pd.DataFrame:
    """Write ``leaderboard.csv`` and ``front/trial_<n>.yaml`` under ``folder``, atomically.

    Each file is written to a temporary file beside it and renamed over the old one, so an
    interrupted run never leaves half a file. Front files of trials no longer on the front
    are removed.

    Returns:
        The leaderboard written.
    """
    from affinity.search.trialfile import write_trial_config

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    board = build_leaderboard(study)
    atomic_write_text(folder / "leaderboard.csv", board.to_csv(index=False))
    front_dir = folder / "front"
    by_number = {t.number: t for t in study.get_trials(deepcopy=False)}
    keep = set()
    for n in front_numbers(board):
        if not isinstance(by_number[n].user_attrs.get("config"), dict):
            continue
        path = front_dir / f"trial_{n}.yaml"
        keep.add(path.name)
        if not path.is_file():  # the model, the study's data and budget, the trial's seed
            write_trial_config(study, by_number[n], path)
    if front_dir.is_dir():
        for old in front_dir.glob("trial_*.yaml"):
            if old.name not in keep:
                old.unlink(missing_ok=True)
    return board
