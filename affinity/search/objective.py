"""One trial: sample -> ModelCfg -> hash -> build -> fvcore cost -> constraints -> train.

Every outcome is recorded on the trial (user attributes) before it is told, so the
leaderboard can show it: ``status`` (see ``affinity.search.study.STATUSES``), ``reason``,
``config`` (the model configuration, the YAML form ``affinity profile``/``train`` read),
``config_hash``, ``seed`` (the training seed, see ``trial_seed``), ``gflops``, ``params_m``,
``latency_ms``, ``val_acc``, ``epoch_acc``.

Randomness is owned by the configuration: every random stream of a trial (weight
initialisation, batch order, augmentation, dropout and drop-path) starts from
``trial_seed(study seed, config hash)``, never from the process's state, so a configuration
gets the same val accuracy whichever trial number, worker or resumed run evaluates it (bit
for bit on the CPU), and a duplicate reuses the result a re-run would give.
"""

from __future__ import annotations

import dataclasses
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

__all__ = ["Outcome", "cpu_latency_ms", "evaluate", "seeded_model", "trial_seed"]

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


@dataclass
class Outcome:
    """How a trial ended: the Optuna state name, its values, and the attributes to record."""

    state: str  # COMPLETE | PRUNED | FAIL
    values: list[float] | None = None
    attrs: dict[str, Any] = field(default_factory=dict)


def cpu_latency_ms(model: Any, in_chans: int, img_size: int, threads: int = 1) -> float:
    """Median CPU wall time (ms) of one forward pass at batch 1, on ``threads`` threads."""
    import copy

    import torch

    cpu = copy.deepcopy(model).cpu().eval()
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
    return 1000 * statistics.median(times)


def _find_duplicate(study: optuna.Study, trial_number: int, digest: str) -> Any:
    from optuna.trial import TrialState

    for t in study.get_trials(
        deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
    ):
        if (
            t.number != trial_number
            and t.user_attrs.get("config_hash") == digest
            and t.user_attrs.get("status") in ("ok", "over_budget", "rejected", "pruned")
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
        on_phase: called with ``sample``, ``build``, ``flops``, ``train`` (after each epoch,
            inside the training loop) and ``eval`` as each phase runs (tests interrupt there).

    Raises:
        optuna.TrialPruned: the pruner stopped it (the caller records it as PRUNED).
    """
    import optuna
    import torch

    from affinity.flops import count_flops, count_params
    from affinity.search.space import config_hash
    from affinity.train import train

    def phase(name: str) -> None:
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

    earlier = _find_duplicate(study, trial.number, digest)
    if earlier is not None:
        keep = ("status", "reason", "seed", "gflops", "params_m", "latency_ms", "val_acc", "epoch_acc")
        copied = {k: earlier.user_attrs[k] for k in keep if k in earlier.user_attrs}
        copied.update(duplicate_of=earlier.number, status="duplicate", duplicate_status=copied.get("status"))
        values = list(earlier.values) if earlier.values is not None else None
        return Outcome(earlier.state.name, values, copied)

    phase("build")
    seed = trial_seed(settings.seed, digest)
    try:
        model = seeded_model(cfg, data, seed)
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
    if settings.max_gflops is not None and gflops > settings.max_gflops:
        over.append(f"{gflops:.4g} GFLOPs > max_gflops {settings.max_gflops:g}")
    if settings.max_params is not None and params_m > settings.max_params:
        over.append(f"{params_m:.4g} M params > max_params {settings.max_params:g}")
    if over:
        return Outcome("PRUNED", attrs={**attrs, "status": "over_budget", "reason": "; ".join(over)})
    for key, value in attrs.items():
        trial.set_user_attr(key, value)

    single = settings.objective == "accuracy"
    epoch_acc: list[float] = []

    def after_epoch(epoch: int, acc: float) -> None:
        epoch_acc.append(float(acc))
        trial.set_user_attr("epoch_acc", epoch_acc)
        if on_epoch is not None:
            on_epoch(epoch, settings.budget.epochs, acc)
        phase("train")
        if single:
            trial.report(float(acc), epoch)
            if trial.should_prune():
                trial.set_user_attr("val_acc", float(acc))
                trial.set_user_attr("status", "pruned")
                trial.set_user_attr("reason", f"pruned after epoch {epoch} at val accuracy {acc:.4f}")
                raise optuna.TrialPruned()

    train_cfg = dataclasses.replace(settings.budget, seed=seed, device=device, threads=threads)
    try:
        metrics = train(model, data, train_cfg, on_epoch=after_epoch, progress=False)
    except AffinityError as exc:
        return Outcome("FAIL", attrs={**attrs, "status": "rejected", "reason": f"train: {exc}"})
    acc = float(metrics.val_acc)
    phase("eval")
    attrs.update(
        val_acc=acc,
        epoch_acc=epoch_acc,
        seed=seed,
        train_s=float(metrics.wall_s),
        latency_ms=cpu_latency_ms(model, data.in_chans, data.img_size, threads=1),
        status="ok",
    )
    values = [acc] if single else [acc, gflops]
    return Outcome("COMPLETE", values, attrs)
