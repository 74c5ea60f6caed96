"""One trial: sample -> ModelCfg -> hash -> build -> fvcore cost -> constraints -> train.

Every outcome is recorded on the trial (user attributes) before it is told, so the
leaderboard can show it: ``status`` (see ``affinity.search.study.STATUSES``), ``reason``,
``config`` (the model configuration, the YAML form ``affinity profile``/``train`` read),
``config_hash``, ``gflops``, ``params_m``, ``latency_ms``, and the training's result:
``val_acc`` (the mean over the seeds), ``val_acc_std`` (their sample standard deviation; None
for one seed), ``n_seeds``, ``seeds``, ``seed_val_acc`` (one accuracy per seed), ``seed``
(the first), ``threads`` (torch threads it trained with), ``epoch_acc`` (the first seed's
per-epoch accuracy, what the pruner saw).

Randomness is owned by the configuration: every random stream of a trial (weight
initialisation, batch order, augmentation, dropout and drop-path) starts from
``trial_seed(study seed, config hash, repeat)``, never from the process's state, so a
configuration gets the same val accuracy whichever trial number, worker or resumed run
evaluates it (bit for bit on the CPU for the same thread count), and a duplicate reuses the
result a re-run would give. ``search.repeats`` (``--repeats K``) trains each new
configuration with the first K such seeds; the objective is their mean.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from affinity.errors import AffinityError

if TYPE_CHECKING:
    import optuna

    from affinity.data import DatasetSplits
    from affinity.search.space import Settings, Space
    from affinity.search.timing import PhaseClock

__all__ = ["Outcome", "cpu_latency_ms", "evaluate", "seeded_model", "trial_seed"]

#: what a trial's result is: a duplicate copies these from the trial it repeats
RESULT_ATTRS = ("status", "reason", "gflops", "params_m", "latency_ms", "val_acc", "val_acc_std", "n_seeds",
                "seeds", "seed_val_acc", "seed", "threads", "epoch_acc", "rung")  # fmt: skip
#: Timed forward passes for the CPU latency (after one warm-up); the median is kept.
LATENCY_RUNS = 5


def trial_seed(study_seed: int, config_hash: str, repeat: int = 0) -> int:
    """The training seed of one run of a configuration: a 31-bit integer from SHA-256 of the
    study seed, the configuration hash and the repeat index (0 for the first seed).

    It depends on nothing else (not the trial number, the worker, the time or the process's
    RNG state), so any process re-derives it; ``affinity train`` reads it from the front file.
    """
    text = f"affinity-trial:{study_seed}:{config_hash}:{repeat}"
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big") & 0x7FFF_FFFF


def seeded_model(cfg: Any, data: DatasetSplits, seed: int) -> Any:
    """``create_model(cfg)`` for ``data``'s geometry, its weights initialised from ``seed``.

    The same global seeding as ``affinity train`` (``torch.manual_seed(seed)`` right before
    the build), so both give the same initial weights for the same seed.
    """
    import torch

    from affinity.models import create_model

    torch.manual_seed(seed)
    return create_model(cfg, num_classes=data.num_classes, img_size=data.img_size, in_chans=data.in_chans)


def model_accepts(space: Any, data: DatasetSplits, params: dict[str, Any]) -> bool:
    """Whether the models take the configuration of ``params`` (a trial's parameters): it
    samples, builds, and runs a forward pass on one blank image, as a trial does before its
    FLOPs are counted (``--sampler ehvi`` skips what a trial would record as rejected). The
    global RNG is left as it was."""
    import optuna
    import torch

    try:
        cfg = space.sample(optuna.trial.FixedTrial(params), img_size=data.img_size)
        with torch.random.fork_rng(), torch.no_grad():
            model = seeded_model(cfg, data, 0).eval()
            model(torch.zeros(1, data.in_chans, data.img_size, data.img_size))
    except AffinityError:
        return False
    return True


def seed_spread(accs: list[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (n - 1) of the per-seed val accuracies; the
    deviation is None for one seed (nothing to measure the spread with)."""
    return statistics.fmean(accs), statistics.stdev(accs) if len(accs) > 1 else None


@dataclass
class Outcome:
    """How a trial ended: the Optuna state name, its values, and the attributes to record."""

    state: str  # COMPLETE | PRUNED | FAIL
    values: list[float] | None = None
    attrs: dict[str, Any] = field(default_factory=dict)


def cpu_latency_ms(model: Any, in_chans: int, img_size: int, threads: int = 1) -> float:
    """Median CPU wall time (ms) of one forward pass at batch 1, on ``threads`` threads.

    A model on the CPU is timed as it is, in eval mode (its mode restored after); one on
    another device, on a CPU copy."""
    import copy

    import torch

    on_cpu = all(t.device.type == "cpu" for t in (*model.parameters(), *model.buffers()))
    cpu = model if on_cpu else copy.deepcopy(model).cpu()
    was_training = cpu.training
    cpu.eval()
    x = torch.randn(1, in_chans, img_size, img_size)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.no_grad():
            cpu(x)
            times = []
            for _ in range(LATENCY_RUNS):
                start = time.perf_counter()
                cpu(x)
                times.append(time.perf_counter() - start)
    finally:
        torch.set_num_threads(before)
        cpu.train(was_training)
    return 1000 * statistics.median(times)


def find_duplicate(study: optuna.Study, trial_number: int, digest: str) -> Any:
    """The finished trial (other than ``trial_number``) that evaluated configuration
    ``digest``, or None."""
    from optuna.trial import TrialState

    for t in study.get_trials(
        deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
    ):
        if (
            t.number != trial_number
            and t.user_attrs.get("config_hash") == digest
            and t.user_attrs.get("status") in ("ok", "over_budget", "rejected", "pruned", "stopped")
        ):
            return t
    return None


def evaluate(
    trial: optuna.Trial,
    study: optuna.Study,
    space: Space,
    settings: Settings,
    data: DatasetSplits,
    *,
    device: str,
    threads: int,
    on_epoch: Callable[[int, int, float], None] | None = None,
    on_phase: Callable[[str], None] | None = None,
    claim: Callable[[str], Any] | None = None,
    clock: PhaseClock | None = None,
) -> Outcome:
    """Run one trial; the result is returned, not told (the caller tells the study).

    Args:
        trial: the asked trial (parameters are sampled here, define-by-run).
        study: its study (for duplicates).
        space: the validated space.
        settings: budget, objective and constraints.
        data: the loaded dataset.
        device: ``cpu`` or ``cuda``.
        threads: torch CPU threads for training and for the latency.
        on_epoch: ``(epoch, epochs, val_acc)`` after each epoch (for the live display).
        on_phase: called with ``sample``, ``build``, ``flops``, ``train`` (as training starts
            and after each epoch, inside the training loop) and ``latency`` as each phase
            runs (tests interrupt there).
        claim: ``claim(config_hash)`` -> the earlier finished trial to copy, or None when this
            trial is the one to train it; workers pass one that also waits while another worker
            trains the same configuration (``_worker``). Default: ``find_duplicate``.
        clock: splits the trial's time among its phases (``affinity.search.timing``).

    Raises:
        optuna.TrialPruned: the pruner stopped it (the caller records it as PRUNED).
    """
    import optuna
    import torch

    from affinity.flops import count_flops, count_params
    from affinity.search.space import config_hash
    from affinity.train import train

    def phase(name: str) -> None:
        if clock is not None:
            clock.start(name)
        if on_phase is not None:
            on_phase(name)

    phase("sample")
    try:
        cfg = space.sample(trial, img_size=data.img_size)
    except AffinityError as exc:
        return Outcome("FAIL", attrs={"status": "rejected", "reason": f"config: {exc}"})
    digest = config_hash(cfg)
    trial.set_user_attr("config", cfg.to_dict())
    trial.set_user_attr("config_hash", digest)

    earlier = claim(digest) if claim is not None else find_duplicate(study, trial.number, digest)
    if earlier is not None:
        copied = {k: earlier.user_attrs[k] for k in RESULT_ATTRS if k in earlier.user_attrs}
        copied.update(duplicate_of=earlier.number, status="duplicate", duplicate_status=copied.get("status"))
        values = list(earlier.values) if earlier.values is not None else None
        for key, value in earlier.constraints.items():
            trial.set_constraint(key, value)
        return Outcome(earlier.state.name, values, copied)

    phase("build")
    try:
        model = seeded_model(cfg, data, trial_seed(settings.seed, digest))
    except AffinityError as exc:
        return Outcome("FAIL", attrs={"status": "rejected", "reason": f"build: {exc}"})
    x = torch.zeros(1, data.in_chans, data.img_size, data.img_size)
    phase("flops")
    try:
        gflops = count_flops(model, x).total / 1e9
    except AffinityError as exc:
        return Outcome("FAIL", attrs={"status": "rejected", "reason": f"forward: {exc}"})
    params_m = count_params(model) / 1e6
    attrs: dict[str, Any] = {"gflops": gflops, "params_m": params_m}
    over = []
    # recorded as Optuna constraints (feasible <= 0) so TPE and NSGA-II model the infeasible
    # region instead of seeing a generic pruned trial
    for key, value, limit, unit in (
        ("max_gflops", gflops, settings.max_gflops, "GFLOPs"),
        ("max_params", params_m, settings.max_params, "M params"),
    ):
        if limit is None:
            continue
        trial.set_constraint(key, value - limit)
        if value > limit:
            over.append(f"{value:.4g} {unit} > {key} {limit:g}")
    if over:
        return Outcome("PRUNED", attrs={**attrs, "status": "over_budget", "reason": "; ".join(over)})
    for key, value in attrs.items():
        trial.set_user_attr(key, value)

    single = settings.objective == "accuracy"
    epochs = settings.budget.epochs
    epoch_acc: list[float] = []
    from affinity.search.fidelity import Stopped, rung_check

    # --fidelity asha: judged at each rung on the first seed's accuracy, as the pruner is
    at_rung = rung_check(study, trial, settings) if settings.fidelity == "asha" else None

    def after_epoch(repeat: int, epoch: int, acc: float) -> None:
        if on_epoch is not None:  # the display counts the epochs of every seed
            on_epoch(repeat * epochs + epoch, settings.repeats * epochs, acc)
        phase("train")
        if repeat:
            return
        # the pruner and epoch_acc follow the first seed (a step is reported once)
        epoch_acc.append(float(acc))
        if at_rung is not None:
            at_rung(epoch, float(acc))
        if single:  # what the worker records if the pruner stops it (else it comes with the result)
            trial.set_user_attr("epoch_acc", epoch_acc)
            trial.report(float(acc), epoch)
            if trial.should_prune():
                trial.set_user_attr("val_acc", float(acc))
                trial.set_user_attr("status", "pruned")
                trial.set_user_attr("reason", f"pruned after epoch {epoch} at val accuracy {acc:.4f}")
                raise optuna.TrialPruned()

    seeds = [trial_seed(settings.seed, digest, k) for k in range(settings.repeats)]
    accs: list[float] = []
    train_s = 0.0
    phase("train")
    for repeat, seed in enumerate(seeds):
        net = model if repeat == 0 else seeded_model(cfg, data, seed)
        train_cfg = dataclasses.replace(settings.budget, seed=seed, device=device, threads=threads)
        try:
            metrics = train(net, data, train_cfg, on_epoch=functools.partial(after_epoch, repeat))
        except AffinityError as exc:
            return Outcome("FAIL", attrs={**attrs, "status": "rejected", "reason": f"train: {exc}"})
        except Stopped as stop:
            stopped = {"val_acc": stop.acc, "rung": stop.rung, "epoch_acc": epoch_acc, "seed": seed}
            return Outcome("PRUNED", None, {**attrs, **stopped, "status": "stopped", "reason": str(stop)})
        accs.append(float(metrics.val_acc))
        train_s += float(metrics.wall_s)
        if clock is not None:
            clock.move("train", "eval", metrics.eval_s)
    mean, std = seed_spread(accs)
    phase("latency")
    attrs.update(
        val_acc=mean,
        val_acc_std=std,
        n_seeds=len(seeds),
        seeds=seeds,
        seed_val_acc=accs,
        epoch_acc=epoch_acc,
        seed=seeds[0],
        threads=threads,
        train_s=train_s,
        latency_ms=cpu_latency_ms(model, data.in_chans, data.img_size, threads=1),
        status="ok",
    )
    values = [mean] if single else [mean, gflops]
    return Outcome("COMPLETE", values, attrs)
