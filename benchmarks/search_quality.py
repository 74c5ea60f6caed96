"""Search quality per sampler: the same space, the same number of trials, several seeds.

For each sampler and seed it runs ``affinity search`` (in this process, one worker,
``--threads`` torch threads) into its own study, then prints per sampler:

- ``median HV``: the median hypervolume of the (max val_acc, min GFLOPs) front;
- ``median regret``: the median of (HV of the union of every run's front − the run's HV),
  absolute and as a fraction of the union's HV;
- ``distinct``: the median number of distinct configurations trained (``config_hash`` of
  the trials that are not duplicates), ``dups``: the median number of duplicate proposals;
- ``wall s``: the median wall time of a study.

Every study is scored at one reference point: val_acc 0 and 1.1 × the largest GFLOPs costed
in any run (printed). Each finished run is appended to ``--log`` (JSON lines) as it ends,
so an interrupted benchmark can be summarised: ``--summarise LOG``.

Every run trains with the same study seed (``--train-seed``, so a configuration gets the same
training seeds and the same accuracy in every run) and varies only the sampler's seed: the
regret then measures the sampler, not the luck of a configuration's training seed
(``--vary-training`` gives each run its own study seed, as before). A configuration trained in
one run is not trained again in another: its ``train`` result is cached by training seed and
budget (exactly what training it again would give, since a trial's training is deterministic
under its seed), in memory or in ``--cache FILE`` (JSON lines, kept across invocations). ``train
s`` is the training time the run would have spent without the cache.

Samplers: ``tpe`` (multivariate, group, constant liar), ``nsga2``, ``random``, ``ehvi``,
``qmc``, and ``tpe-indep`` (independent TPE, no constant liar), ``tpe-startup`` (the default
with n_startup_trials = n_trials // 2), and any ``tpe+KEY=VALUE+...`` (the default TPE with
some options changed: ``TPE_KEYS``, e.g. ``tpe+gamma=0.25+startup=5``), and ``ehvi+lag=L``: ehvi
learning only from trials numbered L or more below the one it proposes, what each of
``--n-jobs J`` workers does with L = 2J (``affinity.search.ehvi``); one worker runs it here,
so the proposals are those of the J workers, trial for trial.

    python benchmarks/search_quality.py --space shifts.yaml --seeds 3 --trials 30 --threads 1
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

SAMPLERS = ("tpe", "random", "nsga2", "qmc", "ehvi", "tpe-startup", "tpe-indep")
#: ``ehvi+lag=L``: ehvi with ``lag`` L (see the docstring)
EHVI_LAG = "ehvi+lag="


class TrainCache:
    """``affinity.train.train`` results by training seed and budget, shared by every run of
    the benchmark (and, with ``path``, by later invocations).

    The key is the training configuration less ``device`` and ``threads``: its seed comes from
    ``trial_seed(study seed, config hash, repeat)``, so it names one configuration's one seed.
    A hit replays the epochs' val accuracies through ``on_epoch`` (the display and a pruner
    see what training would have shown) and returns the stored metrics.
    """

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.hits = 0
        self.spent = 0.0  # training seconds of every call, hit or miss (what they cost uncached)
        self.results: dict[str, dict[str, Any]] = {}
        if path is not None and path.exists():
            for line in path.read_text(encoding="utf-8").splitlines():
                if line:
                    entry = json.loads(line)
                    self.results[entry["key"]] = entry["metrics"]

    @staticmethod
    def key(cfg: Any, data: Any) -> str:
        import dataclasses

        plain = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in ("device", "threads")}
        return json.dumps({"data": [data.name, data.img_size], **plain}, sort_keys=True, default=str)

    def wrap(self, train: Any) -> Any:
        from affinity.train.metrics import TrainMetrics

        def cached(model: Any, data: Any, cfg: Any, *, on_epoch: Any = None, **kwargs: Any) -> Any:
            key = self.key(cfg, data)
            stored = self.results.get(key)
            if stored is None:
                metrics = train(model, data, cfg, on_epoch=on_epoch, **kwargs)
                self.results[key] = stored = metrics.to_dict()
                if self.path is not None:
                    with open(self.path, "a", encoding="utf-8") as fh:
                        fh.write(json.dumps({"key": key, "metrics": stored}) + "\n")
                self.spent += metrics.wall_s
                return metrics
            self.hits += 1
            metrics = TrainMetrics.from_dict(stored)
            self.spent += metrics.wall_s
            if on_epoch is not None:
                for record in metrics.history:
                    on_epoch(record.epoch, record.val_acc)
            return metrics

        return cached


TPE_KEYS = {
    "startup": "n_startup_trials (an integer)",
    "gamma": "the fraction of trials TPE calls good (gamma(n) = ceil(fraction * n), at most 25)",
    "cand": "n_ei_candidates (an integer)",
    "prior": "prior_weight (a number)",
    "liar": "constant_liar (0 or 1)",
    "multivariate": "multivariate and group (0 or 1)",
}


def _tpe_options(spec: str, n_trials: int) -> dict[str, Any]:
    """TPESampler keyword arguments for a ``tpe+KEY=VALUE+...`` sampler spec (``TPE_KEYS``),
    on top of the search's default TPE; ``tpe-indep`` and ``tpe-startup`` are shorthands."""
    import math

    options: dict[str, Any] = {
        "multivariate": True,
        "group": True,
        "constant_liar": True,
        "n_startup_trials": max(2, min(10, n_trials // 3)),
    }
    if spec == "tpe-indep":
        return {**options, "multivariate": False, "group": False, "constant_liar": False}
    if spec == "tpe-startup":
        return {**options, "n_startup_trials": max(2, n_trials // 2)}
    for part in spec.split("+")[1:]:
        key, _, value = part.partition("=")
        if key not in TPE_KEYS or not value:
            raise SystemExit(f"--samplers: {part!r} in {spec!r}: allowed keys: {', '.join(TPE_KEYS)}")
        if key == "startup":
            options["n_startup_trials"] = int(value)
        elif key == "gamma":
            fraction = float(value)
            options["gamma"] = lambda n, f=fraction: min(math.ceil(f * n), 25)
        elif key == "cand":
            options["n_ei_candidates"] = int(value)
        elif key == "prior":
            options["prior_weight"] = float(value)
        elif key == "liar":
            options["constant_liar"] = bool(int(value))
        else:
            options["multivariate"] = options["group"] = bool(int(value))
    return options


def _variant(name: str, n_trials: int, offset: int) -> Any:
    """A ``make_sampler`` for ``name`` whose seed is moved by ``offset`` (the run's sampler
    seed; the study seed stays the training seed). ``tpe`` alone is the search's own."""
    import optuna

    from affinity.search import study as study_mod

    base = study_mod.make_sampler

    def make(settings: Any, space: Any, *, seed: int, **options: Any) -> Any:
        seed += offset
        if name.startswith("tpe") and name != "tpe":
            return optuna.samplers.TPESampler(seed=seed, **_tpe_options(name, n_trials))
        if name.startswith(EHVI_LAG):  # one worker proposing as each of L / 2 workers does
            options["lag"] = int(name.removeprefix(EHVI_LAG))
        return base(settings, space, seed=seed, **options)

    return make


@contextlib.contextmanager
def run_sampler(name: str, n_trials: int, seed: int, train_seed: int | None) -> Iterator[int]:
    """While open, the search's ``make_sampler`` makes ``name``'s sampler (``_variant``) with
    the run's seed, and yields the study seed: ``train_seed`` None: the study seed is ``seed``
    (training varies with the run); else it is ``train_seed`` (the same training seeds in every
    run) and the sampler's seed is moved by ``seed``."""
    from affinity.search import study as study_mod

    base = study_mod.make_sampler
    offset = 0 if train_seed is None else 1_000_003 * (seed + 1)
    study_mod.make_sampler = _variant(name, n_trials, offset)
    try:
        yield seed if train_seed is None else train_seed
    finally:
        study_mod.make_sampler = base


def run_one(
    space: str,
    sampler: str,
    seed: int,
    trials: int,
    threads: int,
    out: Path,
    *,
    train_seed: int | None,
    cache: TrainCache,
) -> dict[str, Any]:
    """One study of ``trials`` distinct configurations; ``train_seed`` None: the study seed is
    ``seed`` (training varies with the run), else the study seed is ``train_seed`` and the
    sampler's seed is moved by ``seed``."""
    import pandas as pd
    from click.testing import CliRunner

    import affinity.train
    from affinity.cli import cli

    name = "".join(c if c.isalnum() or c in "_.-" else "_" for c in sampler) + f"-s{seed}"  # a folder name
    base_train = affinity.train.train
    affinity.train.train = cache.wrap(base_train)  # type: ignore[attr-defined]
    spent = cache.spent
    try:
        with run_sampler(sampler, trials, seed, train_seed) as study_seed:
            start = time.perf_counter()
            args = ["search", "--space", space, "--study", name, "--out", str(out), "--n-trials", str(trials)]
            flag = "tpe" if sampler.startswith("tpe") else sampler.split("+")[0]
            args += ["--sampler", flag, "--seed", str(study_seed)]
            # one worker, in this process: the training cache is patched in here
            args += ["--threads", str(threads), "--n-jobs", "1", "--quiet"]
            res = CliRunner().invoke(cli, args, catch_exceptions=False)
            wall = time.perf_counter() - start
    finally:
        affinity.train.train = base_train  # type: ignore[attr-defined]
    if res.exit_code != 0:
        raise SystemExit(f"{name}: exit {res.exit_code}: {res.output}")
    board = pd.read_csv(out / name / "leaderboard.csv")
    done = board[(board["state"] == "COMPLETE") & board["val_acc"].notna() & board["gflops"].notna()]
    trained = board["status"] != "duplicate"
    return {
        "sampler": sampler,
        "seed": seed,
        "study_seed": study_seed,
        "wall_s": wall,
        "train_s": cache.spent - spent,
        "distinct": int(board.loc[trained, "config_hash"].nunique()),
        "duplicates": int((board["status"] == "duplicate").sum()),
        "points": [[float(a), float(g)] for a, g in zip(done["val_acc"], done["gflops"])],
        "max_gflops": float(board["gflops"].max()),
        "load": os.getloadavg(),
    }


def summarise(runs: list[dict[str, Any]]) -> None:
    """Per sampler: median HV, median regret (absolute, % of the union's HV, and ÷ the
    baseline's median regret: random's where random ran, else the first sampler's), distinct
    configurations trained, duplicate proposals, training seconds (uncached) and wall seconds."""
    from affinity.search.hypervolume import REF_MARGIN, hypervolume

    ref = REF_MARGIN * max(r["max_gflops"] for r in runs)
    union = hypervolume([tuple(p) for r in runs for p in r["points"]], ref)
    print(f"reference point: val_acc 0, {ref:.4g} GFLOPs; union front HV {union:.5g}")
    groups = list(dict.fromkeys(r["sampler"] for r in runs))
    baseline = "random" if "random" in groups else groups[0]
    print(f"{'sampler':<12} {'runs':>4} {'median HV':>10} {'regret':>8} {'regret %':>8} {'÷ ' + baseline:>8} "
          f"{'distinct':>8} {'dups':>5} {'train s':>7} {'wall s':>7}")  # fmt: skip
    regrets = {}
    for sampler in groups:
        mine = [r for r in runs if r["sampler"] == sampler]
        regrets[sampler] = [union - hypervolume([tuple(p) for p in r["points"]], ref) for r in mine]
    for sampler, values in regrets.items():
        mine = [r for r in runs if r["sampler"] == sampler]
        regret = statistics.median(values)
        base = statistics.median(regrets[baseline])
        ratio = regret / base if base else float("nan")  # the baseline found the whole union front
        print(
            f"{sampler:<12} {len(mine):>4} {union - regret:>10.5g} {regret:>8.3g} "
            f"{100 * regret / union:>7.2f}% "
            f"{ratio:>8.2f} {statistics.median(r['distinct'] for r in mine):>8g} "
            f"{statistics.median(r['duplicates'] for r in mine):>5g} "
            f"{statistics.median(r.get('train_s', float('nan')) for r in mine):>7.0f} "
            f"{statistics.median(r['wall_s'] for r in mine):>7.0f}"
        )


def common_options(ap: argparse.ArgumentParser, *, trials: int, trials_help: str | None = None) -> None:
    """The options every search benchmark takes: the space, the seeds, the trials, torch
    threads, and the JSON lines log (``append_log``) a later ``--summarise`` reads back."""
    ap.add_argument("--space", default="shifts.yaml")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument(
        "--first-seed", type=int, default=0, help="seeds FIRST .. FIRST+SEEDS-1 (to add to a log)"
    )
    ap.add_argument("--trials", type=int, default=trials, help=trials_help)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--log", default=None, help="JSON lines, one per finished run (appended).")
    ap.add_argument("--summarise", default=None, metavar="LOG", help="Only summarise a log's runs.")


def read_log(path: str) -> list[dict[str, Any]]:
    """The runs ``append_log`` wrote to ``path``."""
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line]


def append_log(path: str | None, run: dict[str, Any]) -> None:
    """Append one finished run to the log at ``path`` (nothing when None)."""
    if path:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(run) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common_options(ap, trials=30)
    ap.add_argument("--samplers", default=",".join(SAMPLERS))
    ap.add_argument(
        "--train-seed", type=int, default=0, help="the study seed of every run (the training seeds)"
    )
    ap.add_argument(
        "--vary-training", action="store_true", help="each run's study seed is its seed (training varies too)"
    )
    ap.add_argument(
        "--cache", type=Path, default=None, help="trained results (JSON lines), kept across calls"
    )
    args = ap.parse_args()
    if args.summarise:
        summarise(read_log(args.summarise))
        return
    import torch

    from affinity.search.runner import quiet_optuna

    torch.set_num_threads(args.threads)
    quiet_optuna()
    samplers = args.samplers.split(",")
    for spec in samplers:
        if spec.startswith("tpe"):
            _tpe_options(spec, args.trials)
        elif spec not in SAMPLERS and not (spec.startswith(EHVI_LAG) and spec[len(EHVI_LAG) :].isdigit()):
            raise SystemExit(
                f"--samplers: {spec!r} is not allowed; allowed: {', '.join(SAMPLERS)}, "
                "tpe+KEY=VALUE, ehvi+lag=L"
            )
    cache = TrainCache(args.cache)
    train_seed = None if args.vary_training else args.train_seed
    runs = []
    print(f"{args.space}: {args.seeds} seeds x {args.trials} trials; load {os.getloadavg()}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(
            args.first_seed, args.first_seed + args.seeds
        ):  # seed-major: a partial run has every sampler's first seeds
            for sampler in samplers:
                run = run_one(
                    args.space,
                    sampler,
                    seed,
                    args.trials,
                    args.threads,
                    Path(tmp),
                    train_seed=train_seed,
                    cache=cache,
                )
                runs.append(run)
                print(
                    f"  {sampler} seed {seed}: {run['distinct']} distinct, {run['duplicates']} dups, "
                    f"{run['wall_s']:.0f} s ({run['train_s']:.0f} s training uncached), "
                    f"load {run['load'][0]:.1f}",
                    file=sys.stderr,
                    flush=True,
                )
                append_log(args.log, run)
    print(f"trainings cached: {cache.hits} reused, {len(cache.results)} stored", file=sys.stderr)
    summarise(runs)


if __name__ == "__main__":
    main()
