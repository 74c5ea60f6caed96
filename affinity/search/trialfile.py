"""A trial as a file ``affinity train`` re-runs: its model with the study's data and budget and
the trial's own seed, in the run-config format of ``affinity.train.runfile``.

``affinity train results/<study>/front/trial_N.yaml`` (no other flag) then trains what the
trial trained: the same split (``data_seed``, the study's seed), the same weights, batches
and augmentation (``seed``, the trial's first derived seed, see
``affinity.search.objective.trial_seed``) and the same budget, so on the CPU it prints the
val accuracy the leaderboard holds, exactly, when run with the thread count the trial used
(the header says which; ``affinity train`` uses one thread by default, as the search does).
With ``--repeats K`` the leaderboard's val_acc is the mean of K seeds; the file re-runs the
first, and its header lists every seed with its accuracy (``--seed`` picks another).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import optuna

__all__ = ["run_settings", "trial_header", "write_trial_config"]


def run_settings(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> dict[str, Any]:
    """The flat run settings that re-train ``trial``: the study's data and budget, the
    study's seed as ``data_seed`` (the split every trial shared) and the trial's seed."""
    training = dict(study.user_attrs.get("affinity", {}).get("training", {}))
    study_seed = training.get("seed", 0)
    return {**training, "data_seed": study_seed, "seed": trial.user_attrs.get("seed", study_seed)}


def trial_header(study: optuna.Study, trial: optuna.trial.FrozenTrial, path: Path) -> str:
    """Comment lines: where the file comes from, its figures and how to re-run it."""
    a = trial.user_attrs
    seeds, accs = a.get("seeds") or [a.get("seed")], a.get("seed_val_acc") or [a.get("val_acc")]
    spread = f" ± {a['val_acc_std']:.4f} (mean ± std over {len(seeds)} seeds)" if a.get("val_acc_std") else ""
    threads = a.get("threads", 1)
    flag = "" if threads == 1 else f" --threads {threads}"
    lines = [
        f"trial {trial.number} of study {study.study_name!r}: val_acc {a['val_acc']:.4f}{spread}, "
        f"{a['gflops']:.4g} GFLOPs, {a['params_m']:.4g} M params",
        f"affinity train {path.name}{flag}   # re-trains seed {seeds[0]}: val_acc {accs[0]!r} on the CPU "
        f"with {threads} torch thread(s)",
    ]
    if len(seeds) > 1:
        lines.append("seeds: " + ", ".join(f"{s} -> {acc!r}" for s, acc in zip(seeds, accs)))
    return "\n".join(lines)


def write_trial_config(study: optuna.Study, trial: optuna.trial.FrozenTrial, path: str | Path) -> Path:
    """Write ``trial``'s model with its run settings to ``path`` (atomically), under a
    comment with its figures; ``affinity train``/``profile`` read it."""
    from affinity.models.config import ModelCfg
    from affinity.train.runfile import save_run_config

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cfg = ModelCfg.from_dict(trial.user_attrs["config"])
    return save_run_config(cfg, run_settings(study, trial), path, trial_header(study, trial, path))
