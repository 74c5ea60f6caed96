"""Multi-fidelity at equal wall time, replayed offline from a space's trained configurations.

``benchmarks/search_quality.py --cache FILE`` stores every configuration's full training
(study seed 0: the training seed ``trial_seed(0, config hash)``), with its per-epoch val
accuracy. A trial that ASHA stops trains the full schedule and is only cut off, so its rung
accuracy is that stored history at the rung's epoch: a search with or without ASHA can be
replayed from the cache alone, without training, for many seeds.

Each replay proposes configurations as ``--sampler ehvi`` does (the space's enqueued designs
first, uniform draws until ``n_startup`` full-budget trials, then the expected hypervolume
improvement of ``affinity.search.ehvi``'s models), trains each to the full budget or to the
rung where ``affinity.search.fidelity.continues`` stops it, and ends as ``--timeout`` does:
no trial starts after the budget of simulated seconds is spent. A trial's seconds are
``OVERHEAD`` (ask, sample, build, FLOPs, latency, tell, leaderboard: the leaderboard's time_*
columns) plus its training: ``TRAIN_A + TRAIN_B x GFLOPs`` for the full budget (fitted on a
quiet machine's time_train + time_eval; the cache's own wall times were taken under changing
load), times the mean fraction of the full training's wall time reached at each epoch in the
cache. The budget is ``--budget-trials`` full trials of the mean configuration (14: plain
search trains a median 15 full trials, as cheap_signals.py's 200 s studies train 15 to 17).

Variants (``--variants``, comma separated; ``NAME[:key=value...]``):

- ``plain``: no stopping;
- ``asha:rungs=1-3:eta=3``: MO-ASHA; the models learn from full-budget trials only (what
  ``--sampler ehvi`` did before it learned from stopped trials);
- ``...:learn=map:w=0.5``: a stopped trial's rung accuracy counts as the final accuracy the
  full-budget trials' line predicts from it, with weight ``w`` (``1 / w`` times the noise):
  ``affinity.search.ehvi``'s ``_stopped_finals``;
- ``...:learn=offset:w=0.25``: instead, every trial's accuracy at each rung it reached is an
  observation of weight ``w``, with one additive offset per rung;
- ``...:cost=all``: the cost model fitted on every trial's GFLOPs, stopped ones too
  (``learn=map:w=0.5:cost=all`` is what ``--sampler ehvi`` does now);
- ``...:promote=model``: the rung rule ranks a trial by its predicted final accuracy (the
  line from its rung accuracy; a full-budget trial by its final accuracy), not its rung
  accuracy;
- ``...:promote=front:z=0.5``: no rung rule: a trial continues while its predicted final
  accuracy plus ``z`` residual standard deviations beats the best full-budget trial at its
  GFLOPs or below;
- ``...:promote=ehvi:z=0.5``: a trial continues while finishing it is expected to add at least
  ``z`` times the hypervolume per second of the sampler's best new proposal.

Regret is the union front's hypervolume (every cached configuration) less the run's, at
reference point val_acc 0 and 1.1 x the largest GFLOPs, as a percentage of the union's.

    python benchmarks/fidelity_sim.py --space shifts.yaml --cache /work/sqcache/shifts.jsonl --seeds 96
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

#: time_train + time_eval ≈ TRAIN_A + TRAIN_B x GFLOPs seconds on shifts.yaml, quiet machine
#: (27 full-budget trials of two 60 s searches, plain and asha; correlation 0.93)
TRAIN_A, TRAIN_B = 1.61, 1950.0
#: a trial's seconds outside training: ask, sample, build, flops, latency, tell, leaderboard
OVERHEAD = 0.2


@dataclass
class Table:
    """Every trained configuration of a space: parameters, GFLOPs, val accuracy per epoch."""

    hashes: list[str]
    params: list[dict[str, Any]]
    gflops: np.ndarray
    acc: np.ndarray  # configurations x epochs
    epoch_frac: np.ndarray  # mean fraction of the full training's wall time after each epoch
    enqueue: list[dict[str, Any]]

    @property
    def final(self) -> np.ndarray:
        return np.asarray(self.acc[:, -1])


def load_table(space_path: str, cache_path: str, table_path: str | None) -> Table:
    """The space's configurations found in the cache (study seed 0), their GFLOPs counted
    (or read from ``table_path``, written there the first time)."""
    from affinity.search._files import load_space
    from affinity.search.objective import trial_seed

    space = load_space(space_path)
    runs: dict[int, dict[str, Any]] = {}
    for line in Path(cache_path).read_text(encoding="utf-8").splitlines():
        if line:
            entry = json.loads(line)
            runs[json.loads(entry["key"])["seed"]] = entry["metrics"]
    if table_path and Path(table_path).exists():
        rows = json.loads(Path(table_path).read_text(encoding="utf-8"))
    else:
        rows = _count(space)
        if table_path:
            Path(table_path).write_text(json.dumps(rows), encoding="utf-8")
    hashes, params, gflops, acc, frac = [], [], [], [], []
    for digest, p, g in rows:
        run = runs.get(trial_seed(0, digest))
        if run is None:
            continue
        hashes.append(digest)
        params.append(p)
        gflops.append(g)
        acc.append([h["val_acc"] for h in run["history"]])
        frac.append([h["wall_s"] / run["history"][-1]["wall_s"] for h in run["history"]])
    return Table(
        hashes, params, np.array(gflops), np.array(acc), np.array(frac).mean(0), list(space.settings.enqueue)
    )


def _count(space: Any) -> list[list[Any]]:
    """``[hash, parameters, GFLOPs]`` of every configuration a model can be built for."""
    import torch

    from affinity.data.base import load_dataset
    from affinity.errors import AffinityError
    from affinity.flops import count_flops
    from affinity.search._dry import census
    from affinity.search.objective import seeded_model, trial_seed

    s = space.settings
    data = load_dataset(s.dataset, img_size=s.img_size, quiet=True)
    rows = []
    for digest, (p, cfg) in census(space, data.img_size).configs.items():
        try:
            model = seeded_model(cfg, data, trial_seed(0, digest))
            image = torch.zeros(1, data.in_chans, data.img_size, data.img_size)
            rows.append([digest, p, count_flops(model, image).total / 1e9])
        except AffinityError:  # refused by a forward pass: never trained, not in the cache
            continue
    return rows


@dataclass
class Variant:
    name: str
    rungs: list[int] = field(default_factory=list)  # epochs below the full budget
    eta: int = 3
    learn: str = "final"  # final | offset | map
    w: float = 0.25
    cost: str = "full"  # full | all
    promote: str = "raw"  # raw | model | front
    z: float = 1.0


def parse_variant(spec: str) -> Variant:
    name, *opts = spec.split(":")
    v = Variant(spec)
    if name not in ("plain", "asha"):
        raise SystemExit(f"--variants: {name!r} unknown; allowed: plain, asha")
    if name == "asha":
        v.rungs = [1, 3]
    for opt in opts:
        key, _, value = opt.partition("=")
        if key == "rungs":
            v.rungs = [int(r) for r in value.split("-")]
        elif key in ("eta",):
            v.eta = int(value)
        elif key in ("w", "z"):
            setattr(v, key, float(value))
        elif key in ("learn", "cost", "promote"):
            setattr(v, key, value)
        else:
            raise SystemExit(f"--variants: {spec}: option {key!r} unknown")
    return v


@dataclass
class Trial:
    index: int  # the configuration
    rung: int | None  # the epoch it stopped at; None: full budget


class Replay:
    """One search of one variant (see the module's docstring)."""

    def __init__(self, table: Table, variant: Variant, seed: int, *, n_startup: int = 4, draws: int = 32):
        from affinity.search.ehvi import _slot

        self.t = table
        self.v = variant
        self.seed = seed
        self.n_startup = n_startup
        self.draws = draws
        slots = sorted({_slot(n, val) for p in table.params for n, val in p.items()})
        col = {s: j for j, s in enumerate(slots)}
        self.x = np.zeros((len(table.params), len(col)))
        for i, p in enumerate(table.params):
            for n, val in p.items():
                self.x[i, col[_slot(n, val)]] = 1.0
        self.trials: list[Trial] = []
        self.full_s = TRAIN_A + TRAIN_B * table.gflops

    def run(self, budget: float, cap: int) -> tuple[float, list[Trial]]:
        from affinity.search.fidelity import continues

        spent = 0.0
        epochs = self.t.acc.shape[1]
        while spent < budget and len(self.trials) < cap:
            i = self.propose(len(self.trials))
            if i is None:
                break
            trial = Trial(i, None)
            for r in self.v.rungs:
                if self.v.promote == "front":
                    go = self.may_improve(trial, r)
                elif self.v.promote == "ehvi":
                    go = self.worth_finishing(trial, r, len(self.trials))
                else:
                    at = [u for u in self.trials if u.rung is None or u.rung >= r]
                    acc = [self.judged(u, r) for u in at] + [self.judged(trial, r)]
                    g = [float(self.t.gflops[u.index]) for u in at] + [float(self.t.gflops[i])]
                    go = continues(acc, g, self.v.eta)
                if not go:
                    trial.rung = r
                    break
            frac = self.t.epoch_frac[(trial.rung or epochs) - 1]
            spent += OVERHEAD + self.full_s[i] * frac
            self.trials.append(trial)
        return spent, self.trials

    # the rung rule
    def judged(self, trial: Trial, rung: int) -> float:
        """What a trial at ``rung`` is ranked by: its accuracy there, or (``promote=model``)
        its final accuracy if known, else the linear map of its rung accuracy."""
        acc = float(self.t.acc[trial.index, rung - 1])
        if self.v.promote == "raw":
            return acc
        full = [u.index for u in self.trials if u.rung is None]
        if trial.rung is None and trial in self.trials:
            return float(self.t.final[trial.index])
        line = self.line(full, rung)
        return acc if line is None else float(line[0] + line[1] * acc)

    def may_improve(self, trial: Trial, rung: int) -> bool:
        """``promote=front``: whether the trial's final accuracy, predicted by the linear map
        of its rung accuracy, plus ``z`` residual standard deviations, beats the best final
        accuracy of the full-budget trials at its GFLOPs or below (always, before the map)."""
        full = [u.index for u in self.trials if u.rung is None]
        line = self.line(full, rung)
        if line is None:
            return True
        g = self.t.gflops[trial.index]
        level = max((float(self.t.final[j]) for j in full if self.t.gflops[j] <= g), default=0.0)
        pred = line[0] + line[1] * float(self.t.acc[trial.index, rung - 1])
        return bool(pred + self.v.z * line[2] ** 0.5 > level)

    def worth_finishing(self, trial: Trial, rung: int, number: int) -> bool:
        """``promote=ehvi``: whether finishing the trial is expected to add at least ``z``
        times as much hypervolume per second as the best new proposal: its final accuracy
        drawn from the linear map of its rung accuracy (residual noise), the proposals'
        expected improvement from the sampler's models (always, before the map)."""
        from affinity.search.ehvi import hypervolume_improvements

        full = [u.index for u in self.trials if u.rung is None]
        line = self.line(full, rung)
        if line is None or len(full) < self.n_startup:
            return True
        i = trial.index
        rng = np.random.default_rng([self.seed, number, rung])
        acc = line[0] + line[1] * self.t.acc[i, rung - 1] + line[2] ** 0.5 * rng.standard_normal(self.draws)
        front = [(float(self.t.final[j]), float(self.t.gflops[j])) for j in full]
        scored = self.scores(number, taken={u.index for u in self.trials} | {i})
        if scored is None:
            return True
        _, gains, cost, ref = scored
        mine = float(hypervolume_improvements(acc[:, None], self.t.gflops[[i]], front, ref).mean())
        left = self.full_s[i] * (1 - self.t.epoch_frac[rung - 1])
        new = float((gains / (OVERHEAD + TRAIN_A + TRAIN_B * cost)).max())
        return mine / left >= self.v.z * new

    def line(self, full: list[int], rung: int) -> tuple[float, float, float] | None:
        """(intercept, slope, residual variance) of final on rung accuracy, full-budget trials
        (the sampler's own ``rung_line``)."""
        from affinity.search.ehvi import rung_line

        return rung_line(self.t.acc[full, rung - 1], self.t.final[full])

    # the sampler
    def propose(self, number: int) -> int | None:

        taken = {u.index for u in self.trials}
        fixed = self.t.enqueue[number] if number < len(self.t.enqueue) else {}
        pool = [
            i
            for i, p in enumerate(self.t.params)
            if i not in taken and all(p.get(k, val) == val for k, val in fixed.items())
        ]
        if not pool:
            return None
        rng = np.random.default_rng([self.seed, number])
        full = [u.index for u in self.trials if u.rung is None]
        if len(full) < self.n_startup:
            return int(rng.choice(pool))
        scored = self.scores(number, taken, pool)
        assert scored is not None  # the pool is not empty
        return scored[0][int(np.argmax(scored[1]))]

    def scores(
        self, number: int, taken: set[int], pool: list[int] | None = None
    ) -> tuple[list[int], np.ndarray, np.ndarray, float] | None:
        """(pool, expected improvement or, if none improves, the mean accuracy, predicted
        GFLOPs, reference GFLOPs) of the untaken configurations (None: none left)."""
        from affinity.search.ehvi import _cost_fit, _posterior_draws, hypervolume_improvements
        from affinity.search.hypervolume import REF_MARGIN

        if pool is None:
            pool = [i for i in range(len(self.t.params)) if i not in taken]
        if not pool:
            return None
        rng = np.random.default_rng([self.seed, number])
        full = [u.index for u in self.trials if u.rung is None]
        x, y, weights = self.observations(full)
        xc = np.concatenate([self.x[pool], np.zeros((len(pool), x.shape[1] - self.x.shape[1]))], 1)
        acc = _posterior_draws(x, y, xc, self.draws, rng, weights)
        costed = [u.index for u in self.trials] if self.v.cost == "all" else full
        cost = _cost_fit(self.x[costed], self.t.gflops[costed], self.x[pool])
        ref = REF_MARGIN * max(float(cost.max()), float(self.t.gflops[list(taken)].max()))
        front = [(float(self.t.final[i]), float(self.t.gflops[i])) for i in full]
        gains = hypervolume_improvements(acc, cost, front, ref).mean(0)
        return pool, (gains if gains.max() > 0 else acc.mean(0)), cost, ref

    def observations(self, full: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """The accuracy model's features, targets and weights (None: all 1)."""
        x = self.x[full]
        y = self.t.final[full]
        stopped = [u for u in self.trials if u.rung is not None]
        if self.v.learn == "final" or not self.v.rungs:
            return x, y, None
        if self.v.learn == "map":  # what --sampler ehvi does (its weight STOPPED_WEIGHT, here w)
            from affinity.search.ehvi import STOPPED_WEIGHT, _stopped_finals

            at = [({}, u.rung or 0, float(self.t.acc[u.index, (u.rung or 0) - 1]), 0.0) for u in stopped]
            ys, ws = _stopped_finals(y, [self.t.acc[j] for j in full], at)
            weights = np.concatenate([np.ones(len(full)), ws * self.v.w / STOPPED_WEIGHT])
            return np.concatenate([x, self.x[[u.index for u in stopped]]]), np.concatenate([y, ys]), weights
        # offset: one indicator column per rung; every trial's accuracy at each rung it reached
        k = len(self.v.rungs)
        rows, ys = [np.concatenate([x, np.zeros((len(full), k))], 1)], [y]
        for u in self.trials:
            for j, r in enumerate(self.v.rungs):
                if u.rung is None or u.rung >= r:
                    onehot = np.zeros(k)
                    onehot[j] = 1.0
                    rows.append(np.concatenate([self.x[u.index], onehot])[None])
                    ys.append(np.array([self.t.acc[u.index, r - 1]]))
        xs = np.concatenate(rows)
        weights = np.concatenate([np.ones(len(full)), np.full(len(xs) - len(full), self.v.w)])
        return xs, np.concatenate(ys), weights


def regret(table: Table, trials: list[Trial]) -> float:
    """The run's hypervolume regret, % of the union front's (full-budget trials only)."""
    from affinity.search.hypervolume import REF_MARGIN, hypervolume

    ref = REF_MARGIN * float(table.gflops.max())
    union = hypervolume(zip(table.final, table.gflops), ref)
    points = [(float(table.final[u.index]), float(table.gflops[u.index])) for u in trials if u.rung is None]
    return 100 * (union - hypervolume(points, ref)) / union


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--space", required=True)
    ap.add_argument("--cache", required=True, help="search_quality.py's --cache file (JSON lines)")
    ap.add_argument("--table", default=None, help="GFLOPs per configuration: read, or written once")
    ap.add_argument("--seeds", type=int, default=96)
    ap.add_argument("--budget-trials", type=float, default=14, help="budget: this many mean full trials")
    ap.add_argument("--trials", type=int, default=300, help="trials cap (cheap_signals.py's --trials)")
    ap.add_argument(
        "--variants",
        default="plain,asha:rungs=1-3:eta=3,asha:rungs=1-3:eta=3:learn=map:w=0.5:cost=all,"
        "asha:rungs=1-3:eta=2,asha:rungs=1-3:eta=2:learn=map:w=0.5:cost=all",
    )
    args = ap.parse_args()
    table = load_table(args.space, args.cache, args.table)
    budget = args.budget_trials * (OVERHEAD + float((TRAIN_A + TRAIN_B * table.gflops).mean()))
    print(
        f"{args.space}: {len(table.hashes)} configurations, budget {budget:.1f} simulated s, "
        f"{args.seeds} seeds, cap {args.trials} trials; load {os.getloadavg()}",
        flush=True,
    )
    print(f"{'variant':<58} {'regret %':>8} {'÷ plain':>7} {'mean %':>7} {'full':>5} {'stopped':>7}")
    base = None
    start = time.perf_counter()
    for spec in args.variants.split(","):
        v = parse_variant(spec)
        regrets, full, stopped = [], [], []
        for seed in range(args.seeds):
            _, trials = Replay(table, v, seed).run(budget, args.trials)
            regrets.append(regret(table, trials))
            full.append(sum(u.rung is None for u in trials))
            stopped.append(sum(u.rung is not None for u in trials))
        med = statistics.median(regrets)
        base = med if base is None else base
        ratio = med / base if base else float("nan")
        print(
            f"{spec:<58} {med:>8.2f} {ratio:>7.2f} {statistics.mean(regrets):>7.2f} "
            f"{statistics.median(full):>5g} {statistics.median(stopped):>7g}",
            flush=True,
        )
    print(f"({time.perf_counter() - start:.0f} s)", file=sys.stderr)


if __name__ == "__main__":
    main()
