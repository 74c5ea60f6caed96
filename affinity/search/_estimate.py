"""``affinity search --check --estimate``: how long a search will take, from one timed trial
of its cheapest and one of its most expensive configuration by fvcore FLOPs.

The trials run the search's own objective (cost, train for the space's budget, latency) in an
in-memory Optuna study, so nothing is written. A search's duplicate proposals reuse an
earlier result in well under a second and do not count towards n_trials; rejected and
over-budget trials are never trained: each of the n_trials distinct evaluations costs about
one trained trial, between the two timed ones.
"""

from __future__ import annotations

import os
import random
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from affinity.errors import AffinityError
from affinity.search._dry import Census, _Walk

if TYPE_CHECKING:
    from affinity.data import DatasetSplits
    from affinity.search.space import Settings, Space

#: Configurations costed to find the cheapest and the dearest: every distinct one up to this
#: many, else a seeded random sample of this many (fvcore takes about a second each on a busy CPU).
COSTED = 32


@dataclass(frozen=True)
class Timed:
    """One timed trial: its parameters (as Optuna stores them), fvcore GFLOPs, wall seconds
    and how it ended (``ok``, ``over_budget``, ``rejected``)."""

    params: dict[str, Any]
    gflops: float
    seconds: float
    status: str


@dataclass(frozen=True)
class Estimate:
    """A search's run time: n_trials trials, each between the cheap and the dear trial's time,
    ``workers`` at once.

    Attributes:
        n_trials: the distinct evaluations the search will run.
        n_jobs: ``--n-jobs``.
        workers: how many trials run at once: n_jobs, at most one per CPU core on the CPU.
        cheap: the timed trial of the configuration with the fewest FLOPs.
        dear: the timed trial of the one with the most (within the space's budget).
        costed: what the two were chosen from, in words.
        startup: seconds a process's first trial takes over the same trial run again (each
            worker pays it once; not in the bounds).
        load: the 1-minute load average after the timed trials.
    """

    n_trials: int
    n_jobs: int
    workers: int
    cheap: Timed
    dear: Timed
    costed: str
    startup: float
    load: float

    def seconds(self) -> tuple[float, float]:
        """The two timed trials' seconds, shorter first (on a loaded machine the cheap
        configuration's trial can take the longer)."""
        a, b = self.cheap.seconds, self.dear.seconds
        return (min(a, b), max(a, b))

    def minutes(self) -> tuple[float, float]:
        """(lower, upper) bound: n_trials x a trial's seconds / workers, in minutes."""
        return (
            self.n_trials * self.seconds()[0] / self.workers / 60,
            self.n_trials * self.seconds()[1] / self.workers / 60,
        )

    def lines(self) -> list[str]:
        from affinity.units import scale_for

        unit = scale_for([1e9 * self.cheap.gflops, 1e9 * self.dear.gflops])
        lo, hi = self.minutes()
        fast, slow = self.seconds()
        per = f" / {self.workers} workers" if self.workers > 1 else ""
        return [
            f"FLOPs costed for {self.costed}: cheapest {unit(1e9 * self.cheap.gflops)} "
            f"{unit.label('FLOPs')} ({self.cheap.status} in {self.cheap.seconds:.3g} s), dearest "
            f"{unit(1e9 * self.dear.gflops)} {unit.label('FLOPs')} ({self.dear.status} in "
            f"{self.dear.seconds:.3g} s); a process's first trial takes {self.startup:.2g} s longer",
            f"estimate: n_trials {self.n_trials} x ({fast:.3g}..{slow:.3g}) s per trial{per} = "
            f"{lo:.3g}..{hi:.3g} min with --n-jobs {self.n_jobs} (load average {self.load:.1f}; "
            "one timed trial each, on this machine as loaded now)",
        ]


class _Draw(_Walk):
    """A trial stand-in that takes a random value at every suggestion (seeded)."""

    def __init__(self, rng: random.Random) -> None:
        super().__init__()
        self.rng = rng

    def _pick(self, name: str, values: list[Any]) -> Any:
        self.params[name] = value = self.rng.choice(values)
        return value


def _candidates(space: Space, found: Census, img_size: int, seed: int) -> tuple[list[tuple[dict, Any]], str]:
    """The configurations to cost, and what they are in words."""
    rng = random.Random(seed)
    pool = list(found.configs.values())
    if found.points is not None and len(pool) <= COSTED:
        return pool, f"all {len(pool)} distinct configurations"
    if found.points is not None:
        where = " (continuous parameters at their ends and middle)" if found.continuous else ""
        what = f"a seeded random sample of {COSTED} of the {len(pool)} distinct configurations{where}"
        return rng.sample(pool, COSTED), what
    from affinity.search.space import config_hash

    drawn: dict[str, tuple[dict, Any]] = {}
    for _ in range(10 * COSTED):
        draw = _Draw(rng)
        try:
            cfg = space.sample(draw, img_size=img_size)
        except AffinityError:
            continue
        drawn.setdefault(config_hash(cfg), (draw.params, cfg))
        if len(drawn) == COSTED:
            break
    return list(drawn.values()), f"{len(drawn)} distinct configurations drawn at random (seeded)"


def estimate(
    space: Space,
    settings: Settings,
    found: Census,
    data: DatasetSplits,
    *,
    n_trials: int,
    n_jobs: int,
    device: str,
    threads: int,
) -> Estimate:
    """Cost the candidates (see ``COSTED``), then time one trial of the cheapest and one of the
    dearest within the space's --max-gflops/--max-params budget; ``n_jobs`` workers (a
    number: ``auto`` resolved by ``affinity.search.devices.worker_count``)."""
    import torch

    from affinity.flops import count_flops, count_params
    from affinity.search.devices import usable_cores
    from affinity.search.objective import seeded_model

    pool, costed = _candidates(space, found, data.img_size, settings.seed)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        x = torch.zeros(1, data.in_chans, data.img_size, data.img_size)
        cost: list[tuple[float, dict[str, Any]]] = []
        for params, cfg in pool:
            try:
                model = seeded_model(cfg, data, settings.seed)
                gflops, params_m = count_flops(model, x).total / 1e9, count_params(model) / 1e6
            except AffinityError:
                continue  # rejected when built: such a trial is not trained
            if (settings.max_gflops is None or gflops <= settings.max_gflops) and (
                settings.max_params is None or params_m <= settings.max_params
            ):
                cost.append((gflops, params))
        if not cost:
            raise AffinityError(f"--estimate: none of {costed} can be built within the space's budget")
        cost.sort(key=lambda c: c[0])
        # a process's first trial also pays one-time start-up (allocator, kernels, data
        # loader): it runs once untimed, as every worker's first trial pays it once
        first = _timed_trial(space, settings, data, cost[0][1], device=device, threads=threads)
        cheap = _timed_trial(space, settings, data, cost[0][1], device=device, threads=threads)
        dear = _timed_trial(space, settings, data, cost[-1][1], device=device, threads=threads)
    finally:
        torch.set_num_threads(before)
    workers = n_jobs if device != "cpu" else max(1, min(n_jobs, usable_cores()))
    return Estimate(
        n_trials,
        n_jobs,
        workers,
        cheap,
        dear,
        costed,
        first.seconds - cheap.seconds,
        os.getloadavg()[0],
    )


def _timed_trial(
    space: Space,
    settings: Settings,
    data: DatasetSplits,
    params: dict[str, Any],
    *,
    device: str,
    threads: int,
) -> Timed:
    """Run the search's objective on ``params`` in an in-memory study; its wall time."""
    import optuna

    from affinity.search.objective import evaluate
    from affinity.search.study import directions

    wanted: list[Any] = directions(settings.objective)
    study = optuna.create_study(directions=wanted, pruner=optuna.pruners.NopPruner())
    study.enqueue_trial(params)
    trial = study.ask()
    start = time.perf_counter()
    outcome = evaluate(trial, study, space, settings, data, device=device, threads=threads)
    seconds = time.perf_counter() - start
    return Timed(params, float(outcome.attrs.get("gflops", 0.0)), seconds, outcome.attrs["status"])
