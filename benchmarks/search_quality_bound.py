"""How much better than random sampling any sampler can do on a space, at equal trials.

Trains every distinct configuration of a (discrete) space once, as the search's objective
would with study seed ``--train-seed`` (results are kept in ``--cache``, the JSON lines cache of
``search_quality.py``: a configuration trained there is not trained again), then draws, many
times over, ``--trials`` distinct configurations:

- ``random``: uniformly from all configurations (not the search's random sampler, which
  draws each parameter uniformly, so a small branch such as shifts.yaml's spatial shift gets
  half its proposals);
- ``informed``: uniformly from the configurations whose parameters are better than the
  space's average at their cost (each parameter value kept only where its configurations'
  mean accuracy, less their FLOPs level's mean, is above zero), i.e. what a sampler that had
  already learned every parameter's main effect would draw from;
- ``informed+front``: the same, only at the FLOPs levels that hold a point of the union
  front (a sampler that also knew which costs are dominated).

It prints each one's median hypervolume regret against the front of the whole space and its
ratio to random's: how much room there is for a sampler that learns the parameters' main
effects from its own trials (it cannot be expected to do better than ``informed``).

    python benchmarks/search_quality_bound.py --space shifts.yaml --cache CACHE.jsonl
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import random
import statistics
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))


def table(space_name: str, cache_path: Path, train_seed: int) -> list[tuple[dict[str, Any], float, float]]:
    """(parameters, val_acc, gflops) of every configuration the models accept."""
    import torch
    from search_quality import TrainCache

    from affinity.data.base import load_dataset
    from affinity.errors import AffinityError
    from affinity.flops import count_flops
    from affinity.search._dry import census
    from affinity.search._files import load_space
    from affinity.search.objective import seeded_model, trial_seed
    from affinity.train import train

    space = load_space(space_name)
    s = space.settings
    data = load_dataset(s.dataset, img_size=s.img_size, seed=train_seed, quiet=True)
    found = census(space, data.img_size)
    if found.continuous or found.points is None:
        raise SystemExit(f"{space_name}: its configurations cannot be listed (continuous or too many)")
    run = TrainCache(cache_path).wrap(train)
    rows = []
    for i, (digest, (params, cfg)) in enumerate(sorted(found.configs.items())):
        seed = trial_seed(train_seed, digest)
        try:
            model = seeded_model(cfg, data, seed)
            x = torch.zeros(1, data.in_chans, data.img_size, data.img_size)
            gflops = count_flops(model, x).total / 1e9
        except AffinityError:
            continue  # the search records it as rejected
        metrics = run(model, data, dataclasses.replace(s.budget, seed=seed, device="cpu", threads=1))
        rows.append((params, float(metrics.val_acc), gflops))
        print(f"  {i + 1}/{len(found.configs)} configurations", end="\r", file=sys.stderr, flush=True)
    return rows


def informed(rows: list[tuple[dict[str, Any], float, float]]) -> list[tuple[dict[str, Any], float, float]]:
    """The configurations whose every parameter value has an above-average main effect."""
    level: dict[float, list[float]] = defaultdict(list)
    for _, acc, g in rows:
        level[round(g, 12)].append(acc)
    mean = {g: statistics.mean(v) for g, v in level.items()}
    effect: dict[tuple[str, Any], list[float]] = defaultdict(list)
    for params, acc, g in rows:
        for key, value in params.items():
            effect[(key, str(value))].append(acc - mean[round(g, 12)])
    # a parameter that sets the cost (dims, ratio, kind) has a zero effect within its level
    good = {k for k, v in effect.items() if statistics.mean(v) > -1e-9}
    return [r for r in rows if all((k, str(v)) in good for k, v in r[0].items())]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--space", default="shifts.yaml")
    ap.add_argument("--cache", type=Path, required=True, help="search_quality.py's training cache")
    ap.add_argument("--train-seed", type=int, default=0)
    ap.add_argument("--trials", type=int, default=30)
    ap.add_argument("--draws", type=int, default=500)
    args = ap.parse_args()
    import torch

    from affinity.search.hypervolume import REF_MARGIN, contributions, hypervolume

    torch.set_num_threads(1)
    rows = table(args.space, args.cache, args.train_seed)
    ref = REF_MARGIN * max(g for _, _, g in rows)
    union = hypervolume([(a, g) for _, a, g in rows], ref)
    points = [(a, g) for _, a, g in rows]
    front_levels = {round(g, 12) for (_, g), c in zip(points, contributions(points, ref)) if c > 0}
    pools = {"random": rows, "informed": informed(rows)}
    pools["informed+front"] = [r for r in pools["informed"] if round(r[2], 12) in front_levels]
    print(f"{args.space}: {len(rows)} configurations; union front HV {union:.5g} "
          f"(reference GFLOPs {ref:.4g}); load {os.getloadavg()[0]:.1f}")  # fmt: skip
    base = None
    for name, pool in pools.items():
        regrets = []
        for draw in range(args.draws):
            pick = random.Random(draw).sample(pool, min(args.trials, len(pool)))
            regrets.append(union - hypervolume([(a, g) for _, a, g in pick], ref))
        regret = statistics.median(regrets)
        base = base if base is not None else regret
        print(f"{name:<16} {len(pool):>4} configurations  median regret {regret:.3g} "
              f"({100 * regret / union:.2f}%)  ÷ random {regret / base:.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
