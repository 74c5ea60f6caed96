"""Pre-screening (``--prescreen K --proxy NAME``): each trained trial is the best of K proposals
by a zero-cost proxy (``affinity.proxies``).

A worker that asked a trial asks the sampler for K − 1 more (under the study's ask lock, as
any ask), samples each proposal's configuration, scores its untrained model with the proxy on
the first ``PRESCREEN_BATCHES`` batches its training would draw (the same seed and batches as
``affinity proxies``), and trains the best one. The others are told PRUNED with status
``proxy_only``: the sampler sees them as worse than every trained trial; they are never on the
front and do not count towards ``n_trials`` (which counts trained evaluations, so a study of
``n_trials`` N with K proposals trains N configurations and scores about N·K). Each proposal
records ``proxy`` (the name), ``proxy_score`` and ``proxy_s`` (seconds to sample, build and
score it), so the summary shows the wall time spent on the proxy; the trained one records its
``rivals`` (their trial numbers). The trial's phase times count the pre-screening in ``ask``.

Which proposal is trained: configurations not evaluated yet before ones the study already
holds (a known one would be a duplicate and train nothing), then the best score (the proxy's
``higher_is_better``); a proposal the models refuse, or whose score is not a number, ranks
last; ties go to the earlier trial. A trial the study queued (``search.enqueue``, or a retry
of an interrupted trial) is trained as it is, without proposals beside it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from affinity.errors import AffinityError

if TYPE_CHECKING:
    import optuna

    from affinity.data import DatasetSplits
    from affinity.search.settings import Settings
    from affinity.search.space import Space

__all__ = ["PRESCREEN_BATCHES", "prescreen", "prescreen_line"]

#: training batches each proposal's proxy sees (``affinity proxies``' default)
PRESCREEN_BATCHES = 2


def _score(
    trial: optuna.Trial, study: optuna.Study, space: Space, settings: Settings, data: DatasetSplits
) -> tuple[bool, float]:
    """Sample ``trial``'s configuration and score it: (a new configuration, its score; -inf
    when refused or not a number). The attributes are recorded on the trial."""
    from affinity.models.config import ModelCfg
    from affinity.proxies import PROXIES, first_batches, score_model
    from affinity.search.objective import find_duplicate, seeded_model, trial_seed
    from affinity.search.space import config_hash

    start = time.perf_counter()
    entry = PROXIES.get(settings.proxy)
    trial.set_user_attr("proxy", entry.name)
    try:
        cfg: ModelCfg = space.sample(trial, img_size=data.img_size)
        digest = config_hash(cfg)
        trial.set_user_attr("config", cfg.to_dict())
        trial.set_user_attr("config_hash", digest)
        seed = trial_seed(settings.seed, digest)
        model = seeded_model(cfg, data, seed)
        batches = first_batches(
            data,
            seed,
            n_batches=PRESCREEN_BATCHES,
            batch_size=min(settings.budget.batch_size, len(data.train)),
        )
        value = score_model(model, batches, [entry.name], seed=seed).values[entry.name]
    except AffinityError as exc:
        trial.set_user_attr("reason", f"prescreen: {exc}")
        trial.set_user_attr("proxy_s", time.perf_counter() - start)
        return False, -math.inf
    trial.set_user_attr("proxy_score", value if math.isfinite(value) else None)
    trial.set_user_attr("proxy_s", time.perf_counter() - start)
    new = find_duplicate(study, trial.number, digest) is None
    if not math.isfinite(value):
        return new, -math.inf
    return new, value if entry.higher_is_better else -value


def prescreen(
    study: optuna.Study,
    first: optuna.Trial,
    space: Space,
    settings: Settings,
    data: DatasetSplits,
    *,
    ask: Callable[[int], Sequence[optuna.Trial]],
    tell: Callable[[optuna.Trial, dict[str, Any]], None],
) -> optuna.Trial:
    """The proposal to train among ``first`` and ``settings.prescreen`` − 1 more; the others
    are told proxy_only (see the module docstring).

    Args:
        study: the worker's study (its sampler proposes).
        first: the trial the worker asked.
        space, settings, data: the search's.
        ask: ``ask(n)`` -> n more trials, asked as the worker asks (ask lock, host and PID).
        tell: ``tell(trial, attrs)`` records a losing proposal PRUNED with ``attrs``.
    """
    if settings.prescreen < 2 or first.user_attrs.get("enqueued") or "retry_of" in first.user_attrs:
        return first
    proposals = [first, *ask(settings.prescreen - 1)]
    ranked = [(*_score(t, study, space, settings, data), -k) for k, t in enumerate(proposals)]
    winner = max(range(len(proposals)), key=lambda k: ranked[k])
    chosen = proposals[winner]
    best = chosen.user_attrs.get("proxy_score")
    chosen.set_user_attr("rivals", [t.number for t in proposals if t is not chosen])
    for k, t in enumerate(proposals):
        if k == winner:
            continue
        if "reason" in t.user_attrs:  # refused by the models
            why = t.user_attrs["reason"]
        elif not ranked[k][0]:
            why = f"prescreen: its configuration was evaluated already; trial {chosen.number} trained instead"
        else:
            score = _show(t.user_attrs.get("proxy_score"))
            why = f"prescreen: {settings.proxy} {score} ranks below trial {chosen.number}'s {_show(best)}"
        tell(t, {"status": "proxy_only", "reason": why})
    return chosen


def _show(score: float | None) -> str:
    return "no score" if score is None else f"{score:.4g}"


def prescreen_line(trials: Sequence[Any], settings: Settings) -> str | None:
    """The summary line of a pre-screened search: proposals scored, trained, proxy-only, and
    the wall time spent scoring; None without ``--prescreen``."""
    if settings.prescreen < 2:
        return None
    scored = [t for t in trials if "proxy_s" in t.user_attrs]
    seconds = sum(float(t.user_attrs["proxy_s"]) for t in scored)
    only = sum(1 for t in scored if t.user_attrs.get("status") == "proxy_only")
    return (
        f"prescreen ({settings.proxy}, {settings.prescreen} proposals a trial): {len(scored)} proposals "
        f"scored in {seconds:.1f} s ({seconds / max(1, len(scored)):.2f} s each), {len(scored) - only} "
        f"trained, {only} proxy_only (not counted in n_trials)"
    )
