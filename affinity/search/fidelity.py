"""Multi-fidelity for Pareto studies: the rung rule of multi-objective successive halving.

MO-ASHA (Schmucker et al., Multi-objective Asynchronous Successive Halving, 2021) trains
every candidate to a first rung (e.g. 1 epoch), and lets a candidate continue to the next
rung (3 epochs, then 9) only while it is among the best ``1/η`` of the candidates that
reached its rung, ranked by non-dominated sorting of (val accuracy at the rung, GFLOPs), the
last front that does not fit whole cut by crowding distance (Deb et al., NSGA-II, IEEE TEC
2002): the spread-out points of a front go first, so the promoted set covers the whole
accuracy/cost trade-off rather than one end of it.

In the search (``--fidelity asha``) a trial trains its whole budget in one run (one
learning-rate schedule) and is judged after each rung's epoch: it records its val accuracy
there in the study's storage (the ``rung_acc`` attribute, {epochs: accuracy}), reads every
trial that reached that rung so far (from the storage: other workers' and other machines'
trials count) and continues only if it is among the best ``ceil(n / η)`` of those ``n``
(``continues``); otherwise it stops there (status ``stopped``, Optuna state PRUNED, its
last accuracy and rung recorded; never on the front, which holds full-budget trials only).

The decision is asynchronous (ASHA, Li et al. 2020): made once, when the trial reaches the
rung, against the trials that reached it before. The standard rule promotes the best
``floor(n / η)``, so the first η − 1 trials of a study always stop at the first rung. Here it
is ``ceil(n / η)``: the first trial always trains its whole budget, so a Pareto study has a
front (and a hypervolume) from its first trial on, and a short study is not left with none;
as ``n`` grows the two rules promote the same 1/η.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from affinity.search.leaderboard import pareto_ranks

if TYPE_CHECKING:
    import optuna

    from affinity.search.settings import Settings

__all__ = [
    "RUNG_ATTR",
    "Stopped",
    "asha_line",
    "best",
    "continues",
    "crowding_distance",
    "promoted",
    "rung_check",
]

#: the trial attribute holding its val accuracy at each rung it reached, {"epochs": acc}
RUNG_ATTR = "rung_acc"
#: statuses whose rung records are not counted: a duplicate repeats another trial's; an
#: interrupted trial runs again (and records its rungs then); an error is a bug
_NOT_AT_RUNGS = ("duplicate", "interrupted", "error")


def crowding_distance(acc: Sequence[float], gflops: Sequence[float]) -> list[float]:
    """NSGA-II's crowding distance of each point of one front (Deb et al. 2002, section III-B):
    per objective, the points sorted by it, each interior point adds the gap between its two
    neighbours divided by the objective's range; the two extremes of each objective get
    infinity. An objective on which every point is equal adds nothing."""
    n = len(acc)
    distance = [0.0] * n
    for values in (acc, gflops):
        order = sorted(range(n), key=lambda i: (values[i], i))
        span = values[order[-1]] - values[order[0]] if n else 0.0
        if n == 0 or span == 0:
            continue
        distance[order[0]] = distance[order[-1]] = math.inf
        for left, mid, right in zip(order, order[1:], order[2:]):
            distance[mid] += (values[right] - values[left]) / span
    return distance


def promoted(acc: Sequence[float], gflops: Sequence[float], eta: int) -> list[int]:
    """The indices of the candidates that continue past a rung when all of them are judged
    together (synchronous successive halving): the best ``len(acc) // eta`` (``best``).
    Empty while fewer than ``eta`` reached the rung.

    Args:
        acc: val accuracy of each candidate at this rung.
        gflops: its GFLOPs.
        eta: the reduction factor (≥ 2): one in ``eta`` continues.
    """
    if eta < 2:
        raise ValueError(f"eta={eta} is not allowed: an integer >= 2")
    return best(acc, gflops, len(acc) // eta)


def continues(acc: Sequence[float], gflops: Sequence[float], eta: int) -> bool:
    """Whether the last candidate, the one reaching the rung now, continues past it: it is
    among the best ``ceil(len(acc) / eta)`` (``best``) of all that reached it (the module
    docstring says why ceil)."""
    if eta < 2:
        raise ValueError(f"eta={eta} is not allowed: an integer >= 2")
    return len(acc) - 1 in best(acc, gflops, math.ceil(len(acc) / eta))


def best(acc: Sequence[float], gflops: Sequence[float], keep: int) -> list[int]:
    """The indices of the best ``keep`` candidates by non-dominated rank of (``acc``
    maximised, ``gflops`` minimised); within the first front that does not fit whole, the
    largest crowding distance first, then the lower index (the earlier trial). Sorted
    ascending."""
    ranks, _ = pareto_ranks(acc, gflops)
    chosen: list[int] = []
    for rank in sorted(set(ranks)):
        front = [i for i, r in enumerate(ranks) if r == rank]
        if len(chosen) + len(front) > keep:
            distance = crowding_distance([acc[i] for i in front], [gflops[i] for i in front])
            by_spread = sorted(range(len(front)), key=lambda j: (-distance[j], front[j]))
            chosen += [front[j] for j in by_spread[: keep - len(chosen)]]
            break
        chosen += front
    return sorted(chosen)


class Stopped(Exception):
    """Raised after a rung's epoch when the trial does not continue (``rung_check``)."""

    def __init__(self, rung: int, acc: float, reached: int, kept: int) -> None:
        super().__init__(
            f"stopped after epoch {rung} at val accuracy {acc:.4f}: not in the best {kept} of the "
            f"{reached} trials at that rung"
        )
        self.rung = rung
        self.acc = acc


def rung_records(trials: Sequence[Any], rung: int) -> list[tuple[int, float, float]]:
    """(trial number, val accuracy at ``rung``, GFLOPs) of every trial that reached the rung,
    by trial number (running, stopped and complete trials; not those of ``_NOT_AT_RUNGS``)."""
    out = []
    for t in trials:
        at = t.user_attrs.get(RUNG_ATTR) or {}
        if str(rung) in at and t.user_attrs.get("status") not in _NOT_AT_RUNGS and t.state.name != "FAIL":
            out.append((t.number, float(at[str(rung)]), float(t.user_attrs["gflops"])))
    return sorted(out)


def rung_check(study: optuna.Study, trial: optuna.Trial, settings: Settings) -> Callable[[int, float], None]:
    """The per-epoch hook of an ``asha`` trial (its GFLOPs already recorded): after each rung
    below the full budget it records ``(epoch, acc)`` in the storage, reads the trials that
    reached the rung and raises ``Stopped`` unless this one ``continues``."""
    rungs = settings.rung_epochs()[:-1]
    reached: dict[str, float] = {}

    def check(epoch: int, acc: float) -> None:
        if epoch not in rungs:
            return
        reached[str(epoch)] = float(acc)
        trial.set_user_attr(RUNG_ATTR, dict(reached))
        others = [r for r in rung_records(study.get_trials(deepcopy=False), epoch) if r[0] != trial.number]
        mine = (trial.number, float(acc), float(trial.user_attrs["gflops"]))
        records = [*others, mine]  # this trial last: continues() judges the last one
        if not continues([r[1] for r in records], [r[2] for r in records], settings.eta):
            raise Stopped(epoch, acc, len(records), math.ceil(len(records) / settings.eta))

    return check


def asha_line(trials: Sequence[Any], settings: Settings) -> str | None:
    """The summary line of an ``asha`` search: how many trials stopped at each rung, how many
    trained the full budget, and the epochs trained against a plain search of as many
    trials; None for ``fidelity: none``."""
    if settings.fidelity != "asha":
        return None
    rungs = settings.rung_epochs()
    epochs = rungs[-1]
    stopped = [int(t.user_attrs["rung"]) for t in trials if t.user_attrs.get("status") == "stopped"]
    full = sum(1 for t in trials if t.user_attrs.get("status") == "ok")
    at = ", ".join(f"{stopped.count(r)} at epoch {r}" for r in rungs[:-1])
    trained = sum(stopped) + full * epochs
    plain = (len(stopped) + full) * epochs
    return (
        f"asha (rungs {', '.join(map(str, rungs))} epochs, eta {settings.eta}): {len(stopped)} trials "
        f"stopped early ({at}), {full} trained the full budget; {trained} epochs trained, "
        f"{plain} without stopping"
    )
