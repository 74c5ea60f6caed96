"""Scoring a study's trained configurations with proxies and ranking the proxies.

Each trained trial (COMPLETE, status ``ok``: duplicates repeat a configuration already
scored) is rebuilt as it was trained: its model configuration, initialised from the trial's
first seed (``affinity.search.objective.seeded_model``), fed the first batches its training
drew (``first_batches``) of the study's dataset, split by the study's seed. So a trial's
scores depend on nothing but the study, and a second run gives the same numbers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from affinity.errors import StudyError
from affinity.proxies._proxies import PROXIES, first_batches, score_model
from affinity.proxies._rank import kendall_tau_b, spearman_rho

if TYPE_CHECKING:
    import optuna
    import pandas as pd

__all__ = ["ProxyStudy", "correlations", "score_study", "trained_trials"]

#: the columns of ``ProxyStudy.scores`` before one column per proxy (``hv_contribution``: the
#: trial's exclusive hypervolume contribution to the trained trials' front, ``hypervolume``)
TRIAL_COLUMNS = ("number", "config_hash", "seed", "val_acc", "gflops", "hv_contribution")
#: the columns of ``ProxyStudy.correlations`` (``_hv``: with the hypervolume contribution)
CORRELATION_COLUMNS = (
    "proxy", "kendall_tau", "spearman_rho", "kendall_tau_hv", "spearman_rho_hv", "n", "higher_is_better",
    "s_per_trial", "paper",
)  # fmt: skip


@dataclass
class ProxyStudy:
    """The proxies of a study (data only; ``affinity.proxies.plots`` draws it).

    Args:
        study: the study name.
        proxies: the proxies, in the order asked.
        scores: one row per trained trial: ``TRIAL_COLUMNS``, then one column per proxy.
        correlations: one row per proxy: ``CORRELATION_COLUMNS`` (τ-b and ρ of the score,
            turned round where lower is better, with the trained val accuracy, then with the
            hypervolume contribution; ``n`` the trials with a score; ``s_per_trial`` the mean
            wall time of one scoring).
        n_batches: batches fed to each proxy.
        batch_size: images per batch.
        seconds: every proxy's wall time per trial, by proxy.
    """

    study: str
    proxies: list[str]
    scores: pd.DataFrame
    correlations: pd.DataFrame
    n_batches: int
    batch_size: int
    seconds: dict[str, list[float]] = field(default_factory=dict)


def trained_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """The study's trained configurations: COMPLETE trials with status ``ok``, by number."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return sorted((t for t in trials if t.user_attrs.get("status") == "ok"), key=lambda t: t.number)


def _training(study: optuna.Study) -> dict[str, Any]:
    training = study.user_attrs.get("affinity", {}).get("training")
    if not training:
        raise StudyError(
            f"study {study.study_name!r} does not record its training settings (dataset, image size, "
            "seed); allowed: a study written by affinity search"
        )
    return dict(training)


def score_study(
    study: optuna.Study,
    names: Sequence[str],
    *,
    n_batches: int,
    on_trial: Callable[[int, int, int], None] | None = None,
) -> ProxyStudy:
    """Score every trained configuration of ``study`` with each proxy of ``names``.

    Args:
        study: a study written by ``affinity search``.
        names: registered proxy names.
        n_batches: training batches (of the study's batch size) fed to each proxy.
        on_trial: ``(done, total, trial_number)`` after each trial is scored (progress).

    Raises:
        UnknownNameError: a name that is not a proxy (before any work).
        StudyError: the study has no trained trial, or no training settings.
    """
    import pandas as pd

    from affinity.data import load_dataset
    from affinity.models.config import ModelCfg
    from affinity.search.leaderboard import trial_accuracy
    from affinity.search.objective import seeded_model

    entries = [PROXIES.get(name) for name in names]
    training = _training(study)
    trials = trained_trials(study)
    if not trials:
        raise StudyError(
            f"study {study.study_name!r} has no trained trial to score (none COMPLETE with status ok)"
        )
    data = load_dataset(training["dataset"], img_size=training["img_size"], seed=training["seed"], quiet=True)
    batch_size = min(int(training["batch_size"]), len(data.train))
    n_batches = min(n_batches, len(data.train) // batch_size)
    rows: list[dict[str, Any]] = []
    seconds: dict[str, list[float]] = {e.name: [] for e in entries}
    for done, trial in enumerate(trials, 1):
        seed = int(trial.user_attrs.get("seed", training["seed"]))
        model = seeded_model(ModelCfg.from_dict(trial.user_attrs["config"]), data, seed)
        batches = first_batches(data, seed, n_batches=n_batches, batch_size=batch_size)
        scores = score_model(model, batches, [e.name for e in entries], seed=seed)
        rows.append(
            {
                "number": trial.number,
                "config_hash": trial.user_attrs.get("config_hash"),
                "seed": seed,
                "val_acc": trial_accuracy(trial),
                "gflops": trial.user_attrs.get("gflops"),
                **scores.values,
            }
        )
        for name, s in scores.seconds.items():
            seconds[name].append(s)
        if on_trial is not None:
            on_trial(done, len(trials), trial.number)
    from affinity.search.hypervolume import REF_MARGIN, contributions

    # the reference point of the study's hypervolume: 1.1 x the largest GFLOPs costed
    costs = [
        float(t.user_attrs["gflops"]) for t in study.get_trials(deepcopy=False) if "gflops" in t.user_attrs
    ]
    points = [(float(r["val_acc"]), float(r["gflops"])) for r in rows]
    for row, hv in zip(rows, contributions(points, REF_MARGIN * max(costs))):
        row["hv_contribution"] = hv
    frame = pd.DataFrame(rows, columns=[*TRIAL_COLUMNS, *(e.name for e in entries)])
    return ProxyStudy(
        study=study.study_name,
        proxies=[e.name for e in entries],
        scores=frame,
        correlations=correlations(frame, [e.name for e in entries], seconds),
        n_batches=n_batches,
        batch_size=batch_size,
        seconds=seconds,
    )


def correlations(
    scores: pd.DataFrame, names: Sequence[str], seconds: dict[str, list[float]] | None = None
) -> pd.DataFrame:
    """Kendall τ-b and Spearman ρ of each proxy's score (negated where lower is better) with
    ``val_acc`` and with ``hv_contribution``, over the trials where both are known (``n``)."""
    import math

    import numpy as np
    import pandas as pd

    acc = scores["val_acc"].astype(float).to_numpy()
    hv = scores["hv_contribution"].astype(float).to_numpy()
    rows = []
    for name in names:
        entry = PROXIES.get(name)
        score = scores[name].astype(float).to_numpy() * (1 if entry.higher_is_better else -1)
        times = (seconds or {}).get(name) or []
        rows.append(
            {
                "proxy": name,
                "kendall_tau": kendall_tau_b(score, acc),
                "spearman_rho": spearman_rho(score, acc),
                "kendall_tau_hv": kendall_tau_b(score, hv),
                "spearman_rho_hv": spearman_rho(score, hv),
                "n": int(np.count_nonzero(~(np.isnan(score) | np.isnan(acc)))),
                "higher_is_better": entry.higher_is_better,
                "s_per_trial": sum(times) / len(times) if times else math.nan,
                "paper": entry.paper,
            }
        )
    return pd.DataFrame(rows, columns=list(CORRELATION_COLUMNS))
