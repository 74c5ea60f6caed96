"""``--sampler ehvi``: expected hypervolume improvement over a space's listed configurations.

For spaces small enough to list (``census``: a few hundred to a few thousand distinct
configurations, every parameter a choice or a short range), the sampler proposes, at each
trial, the configuration not yet evaluated whose expected improvement of the study's front is
largest, under two additive models fitted to the trials so far:

- **accuracy**: Bayesian linear regression on the one-hot parameter values (ridge prior,
  noise from the residuals); the expectation is over ``draws`` samples of its posterior
  (Thompson draws averaged), which is what makes it explore a value it knows little about;
- **cost** (GFLOPs, deterministic): least squares of its logarithm on the same features (a
  model's cost is close to a product of width, ratio and kind factors), the fitted value only.

With ``--fidelity asha`` most trials stop at a rung, and the models learn from them too: a
stopped trial's GFLOPs are costed like any other, and its accuracy at the rung counts as the
final accuracy the full-budget trials' line predicts from it (least squares of their final
accuracy on their accuracy at that epoch, once ``MIN_LINE`` of them have one), with weight
``STOPPED_WEIGHT``. The front is still the full-budget trials'. Why: learning from full-budget
trials only, the cost fit saw 7 of a search's 40 trials and the accuracy model as few, and
ASHA's regret at equal wall time on ``shifts.yaml`` was 2.4x plain search's; learning from
both it is 0.73x (``benchmarks/fidelity_sim.py``, 96 seeds replayed from trained
configurations; the cost alone 1.0x).

A single-objective study uses the expected improvement of the best accuracy. Proposals are
distinct configurations: an evaluated, running or refused one is never proposed again (until
the space is exhausted, when the search's duplicate guard ends the study). A configuration
the models refuse (e.g. reflect padding wider than a stage's map) is found with a forward
pass on one blank image before it is proposed (``accepts``) and skipped, so it costs no trial.
The first ``n_startup`` distinct evaluations (enqueued designs included) are uniform draws.

**Constraints** (``limits``: ``--max-gflops``, ``--max-params``): a configuration whose
fitted cost (the log-linear fit above, of every costed trial's GFLOPs or parameters, over-budget
ones included) exceeds a limit is proposed only after every one within the limits, startup
draws included, once ``n_startup`` configurations are costed. Why: without it the sampler
spent trials on configurations the search then refused as over budget (on shifts.yaml with
``--max-gflops 0.0006``, 10 of 16 trials; with it 3: two startup draws and one the fit
misjudged); a trial the fit misjudges is costed, refused and joins the fit.

**Several workers, the same proposals every run** (``lag``): with ``lag`` L the proposal for
trial k learns only from trials numbered k - L or below, and the search's workers start trial
k only once those have finished (``affinity.search._worker``). Trials numbered between are
pending: their configurations (``CHOSEN``, written when each was proposed) are not proposed
again, their results not used yet. So which configurations a search of J workers proposes no
longer depends on which trials happened to finish first, and the same command gives the same
study. ``lag`` 1 is a search of one worker. With J = 2 workers and L = 4, replaying the
trial times of shifts.yaml's 282 trained configurations, the waits cost 2% of two free-running
workers' throughput (1.92x one worker's, against 1.96x; L = 2: 1.59x).

Why: on ``shifts.yaml`` the front is decided by a few near-tied designs at the cheapest
widths; TPE, splitting the trials by non-dominated rank, reached 0.90x random sampling's
hypervolume regret with 18.5 duplicate proposals a 30-trial study, this sampler 0.39x with
none (``benchmarks/search_quality.py``, 24 seeds; README): a model of each parameter's main
effect next to the cost it comes with is what finds them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import optuna

__all__ = ["CHOSEN", "EhviSampler", "hypervolume_improvements"]

#: the system attribute that holds the configuration hash ehvi proposed for a trial, written
#: as it is proposed (under the search's ask lock), before the trial records ``config_hash``
CHOSEN = "ehvi:chosen"

#: ridge prior of the accuracy model (on one-hot features, accuracy in [0, 1])
ACC_RIDGE = 1.0
#: ridge of the log-cost fit: nearly least squares (the cost is deterministic)
COST_RIDGE = 1e-3
#: the noise variance of the accuracy model is at least this fraction of the observed variance
NOISE_FLOOR = 0.01
#: refused configurations checked in a row before giving up on a trial (random fills it)
MAX_CHECKS = 64
#: the weight of a stopped trial's predicted final accuracy in the accuracy model (a
#: full-budget trial's is 1): it is a prediction, observed with twice the noise
STOPPED_WEIGHT = 0.5
#: full-budget trials needed to fit the line from a rung's accuracy to the final one
MIN_LINE = 3

#: a full-budget trial: its parameters, its values, its val accuracy after each epoch
Observed = tuple[dict[str, Any], list[float], list[float]]
#: a trial ASHA stopped: its parameters, its rung (epochs), its accuracy there, its GFLOPs
Stopped = tuple[dict[str, Any], int, float, float]
#: a costed trial: its parameters, the values of the sampler's ``limits``' attributes
Costed = tuple[dict[str, Any], list[float]]


def hypervolume_improvements(
    acc: np.ndarray, cost: np.ndarray, front: Sequence[tuple[float, float]], ref: float
) -> np.ndarray:
    """The hypervolume each ``(acc, cost)`` candidate adds to ``front``'s (maximise accuracy,
    minimise cost; reference point accuracy 0, cost ``ref``). ``acc`` and ``cost`` broadcast
    (e.g. draws x candidates against candidates): the strips of the front's staircase the
    candidate rises above, each as wide as it lies right of the candidate's cost."""
    import numpy as np

    xs: list[float] = []
    best: list[float] = []
    for g, a in sorted((g, a) for a, g in front if a > 0 and g < ref):
        if not best or a > best[-1]:
            xs.append(g)
            best.append(a)
    edges = np.array([0.0, *xs, ref])
    level = np.array([0.0, *best])
    start = np.maximum(edges[:-1], cost[..., None])
    width = np.clip(edges[1:] - start, 0.0, None)
    return np.asarray((np.clip(acc[..., None] - level, 0.0, None) * width).sum(-1))


def _slot(name: str, value: Any) -> tuple[str, str]:
    return name, json.dumps(value, sort_keys=True, default=str)


class EhviSampler:
    """An Optuna sampler over ``configs`` (see the module's docstring).

    Args:
        configs: ``config hash -> parameters as a trial holds them``, one per distinct
            configuration (``census(space).configs``).
        seed: seeds the startup draws and the posterior draws (with the trial number, so a
            proposal does not depend on what else the process sampled).
        n_startup: distinct evaluated configurations before the models are used.
        draws: posterior samples averaged into the expected improvement.
        accepts: ``accepts(parameters) -> bool``, False for a configuration the models refuse.
        lag: trial k learns from trials numbered ``k - lag`` or below (1: from every finished
            trial); see the module's docstring.
        limits: ``user attribute -> limit``, the most a proposal should cost (``gflops``:
            ``max_gflops``, ``params_m``: ``max_params``); see the module's docstring.
    """

    def __new__(
        cls,
        configs: dict[str, dict[str, Any]],
        *,
        seed: int,
        n_startup: int = 4,
        draws: int = 32,
        accepts: Callable[[dict[str, Any]], bool] | None = None,
        lag: int = 1,
        limits: dict[str, float] | None = None,
    ) -> Any:
        # built on first use so that importing this module does not import optuna and numpy
        return _sampler_class()(
            configs, seed=seed, n_startup=n_startup, draws=draws, accepts=accepts, lag=lag, limits=limits
        )


def _sampler_class() -> type:
    import numpy as np
    from optuna.samplers import BaseSampler, RandomSampler
    from optuna.study import StudyDirection
    from optuna.trial import TrialState

    from affinity.search.hypervolume import REF_MARGIN

    class _Ehvi(BaseSampler):
        def __init__(
            self,
            configs: dict[str, dict[str, Any]],
            *,
            seed: int,
            n_startup: int,
            draws: int,
            accepts: Callable[[dict[str, Any]], bool] | None,
            lag: int,
            limits: dict[str, float] | None,
        ) -> None:
            self._hashes = list(configs)
            self._params = [configs[h] for h in self._hashes]
            slots = sorted({_slot(n, v) for p in self._params for n, v in p.items()})
            self._col = {s: j for j, s in enumerate(slots)}
            self._x = (
                np.stack([self._features(p) for p in self._params]) if self._params else np.zeros((0, 0))
            )
            self._seed = seed
            self._n_startup = n_startup
            self._draws = draws
            self._accepts = accepts
            self._lag = lag
            self._limits = dict(limits or {})
            self._refused: set[str] = set()
            self._chosen: dict[int, dict[str, Any]] = {}
            self._random = RandomSampler(seed=seed)

        def _features(self, params: dict[str, Any]) -> np.ndarray:
            row = np.zeros(len(self._col))
            for name, value in params.items():
                j = self._col.get(_slot(name, value))
                if j is not None:
                    row[j] = 1.0
            return row

        # Optuna's sampler interface: every parameter is an independent draw of the chosen set
        def infer_relative_search_space(self, study: optuna.Study, trial: Any) -> dict[str, Any]:
            return {}

        def sample_relative(
            self, study: optuna.Study, trial: Any, search_space: dict[str, Any]
        ) -> dict[str, Any]:
            return {}

        def reseed_rng(self) -> None:
            self._random.reseed_rng()

        def before_trial(self, study: optuna.Study, trial: Any) -> None:
            chosen = self._choose(study, trial)
            if chosen is not None:
                digest, self._chosen[trial.number] = chosen
                study._storage.set_trial_system_attr(trial._trial_id, CHOSEN, digest)

        def sample_independent(self, study: optuna.Study, trial: Any, name: str, distribution: Any) -> Any:
            chosen = self._chosen.get(trial.number)
            if chosen is not None and name in chosen:
                value = chosen[name]
                try:
                    if distribution._contains(distribution.to_internal_repr(value)):
                        return value
                except (ValueError, TypeError):
                    pass
            return self._random.sample_independent(study, trial, name, distribution)

        def after_trial(self, study: optuna.Study, trial: Any, state: Any, values: Any) -> None:
            self._chosen.pop(trial.number, None)

        # choosing
        def _choose(self, study: optuna.Study, trial: Any) -> tuple[str, dict[str, Any]] | None:
            """The configuration to propose for ``trial``: its hash and parameters."""
            fixed = trial.system_attrs.get("fixed_params") or {}
            taken: set[str] = set()  # evaluated, running or pending
            observed: dict[str, Observed] = {}  # first result per config
            stopped: list[Stopped] = []
            costs: list[float] = []  # every GFLOPs costed (over-budget ones too)
            costed: dict[str, Costed] = {}  # first per configuration
            horizon = trial.number - self._lag  # trials above it are pending (``lag``)
            for t in study.get_trials(deepcopy=False):
                digest = t.user_attrs.get("config_hash") or t.system_attrs.get(CHOSEN)
                if digest is None or t.number == trial.number:
                    continue
                taken.add(digest)
                if t.number > horizon:
                    continue
                if "gflops" in t.user_attrs:
                    costs.append(float(t.user_attrs["gflops"]))
                if self._limits and digest not in costed and all(k in t.user_attrs for k in self._limits):
                    costed[digest] = (t.params, [float(t.user_attrs[k]) for k in self._limits])
                if t.state == TrialState.COMPLETE and t.values and digest not in observed:
                    observed[digest] = (t.params, list(t.values), list(t.user_attrs.get("epoch_acc") or []))
                elif t.user_attrs.get("status") == "stopped" and "gflops" in t.user_attrs:
                    at = (int(t.user_attrs["rung"]), float(t.user_attrs["val_acc"]))
                    stopped.append((t.params, *at, float(t.user_attrs["gflops"])))
            pool = [
                i
                for i, (h, p) in enumerate(zip(self._hashes, self._params))
                if h not in taken and all(p.get(k, v) == v for k, v in fixed.items())
            ]
            if not pool:
                return None
            rng = np.random.default_rng([self._seed & 0xFFFFFFFF, trial.number])
            if len(observed) < self._n_startup:
                order = list(rng.permutation(pool))
            else:
                scores = self._scores(study, list(observed.values()), stopped, costs, pool, rng)
                order = [pool[j] for j in np.argsort(-scores, kind="stable")]
            if self._limits and len(costed) >= self._n_startup:
                over = self._over_limits(list(costed.values()), order)
                order = [i for i, o in zip(order, over) if not o] + [i for i, o in zip(order, over) if o]
            # configurations found refused stay in the pool and count as checks, so that a
            # proposal does not depend on what this process happened to check before
            for checked, i in enumerate(order):
                if checked >= MAX_CHECKS:
                    break
                if self._hashes[i] in self._refused:
                    continue
                if self._accepts is None or self._accepts(self._params[i]):
                    return self._hashes[i], {**self._params[i], **fixed}
                self._refused.add(self._hashes[i])
            return None

        def _over_limits(self, costed: list[Costed], order: list[int]) -> np.ndarray:
            """Whether each of ``order``'s configurations is fitted above one of the limits."""
            x = np.stack([self._features(p) for p, _ in costed])
            values = np.array([v for _, v in costed])
            xc = self._x[order]
            over = np.zeros(len(order), dtype=bool)
            for j, limit in enumerate(self._limits.values()):
                over |= _cost_fit(x, values[:, j], xc) > limit
            return over

        def _scores(
            self,
            study: optuna.Study,
            observed: list[Observed],
            stopped: list[Stopped],
            costs: list[float],
            pool: list[int],
            rng: np.random.Generator,
        ) -> np.ndarray:
            """Expected improvement of each pooled configuration (higher is better)."""
            # affinity's studies: maximise accuracy, or (maximise accuracy, minimise GFLOPs)
            sign = 1.0 if study.directions[0] == StudyDirection.MAXIMIZE else -1.0
            x = np.stack([self._features(p) for p, _, _ in observed])
            y = np.array([sign * v[0] for _, v, _ in observed])
            xs = np.stack([self._features(p) for p, *_ in stopped]) if stopped else x[:0]
            ys, ws = _stopped_finals(y, [curve for *_, curve in observed], stopped)
            xc = self._x[pool]
            weights = np.concatenate([np.ones(len(y)), ws]) if stopped else None
            acc = _posterior_draws(
                np.concatenate([x, xs]), np.concatenate([y, ys]), xc, self._draws, rng, weights
            )
            if len(study.directions) == 1:
                gains = np.clip(acc - y.max(), 0.0, None).mean(0)
                return np.asarray(gains if gains.max() > 0 else acc.mean(0))
            raw = np.array([v[1] for _, v, _ in observed])
            cost = _cost_fit(np.concatenate([x, xs]), np.concatenate([raw, [g for *_, g in stopped]]), xc)
            ref = REF_MARGIN * max(float(cost.max()), max(costs, default=0.0), float(raw.max()))
            front = [(float(a), float(g)) for a, g in zip(y, raw)]
            gains = hypervolume_improvements(acc, cost, front, ref).mean(0)
            if gains.max() <= 0:  # no candidate is expected to add to the front: the most accurate
                return np.asarray(acc.mean(0))
            return np.asarray(gains)

    return _Ehvi


def rung_line(at_rung: np.ndarray, final: np.ndarray) -> tuple[float, float, float] | None:
    """(intercept, slope, residual variance) of the least-squares line of full-budget trials'
    ``final`` accuracies on their accuracies ``at_rung``; None while fewer than ``MIN_LINE``
    trials, or no two distinct rung accuracies, fit it."""
    import numpy as np

    if len(at_rung) < MIN_LINE or np.ptp(at_rung) == 0:
        return None
    slope, intercept = np.polyfit(at_rung, final, 1)
    res = final - (intercept + slope * at_rung)
    return float(intercept), float(slope), float(res @ res) / max(len(final) - 2, 1)


def _stopped_finals(
    final: np.ndarray, curves: Sequence[Sequence[float]], stopped: Sequence[Stopped]
) -> tuple[np.ndarray, np.ndarray]:
    """What each stopped trial tells the accuracy model: its final accuracy predicted from
    its rung accuracy by the ``rung_line`` of the full-budget trials (``final``, and their
    accuracies after each epoch, ``curves``) at that epoch, and the weight of that
    observation: ``STOPPED_WEIGHT``, or 0 (ignored) where there is no line yet."""
    import numpy as np

    lines: dict[int, tuple[float, float, float] | None] = {}
    finals, weights = [], []
    for _, rung, acc, _ in stopped:
        if rung not in lines:
            pairs = [(c[rung - 1], f) for c, f in zip(curves, final) if len(c) >= rung]
            lines[rung] = rung_line(np.array([a for a, _ in pairs]), np.array([f for _, f in pairs]))
        line = lines[rung]
        finals.append(0.0 if line is None else line[0] + line[1] * acc)
        weights.append(0.0 if line is None else STOPPED_WEIGHT)
    return np.array(finals), np.array(weights)


def _posterior_draws(
    x: np.ndarray,
    y: np.ndarray,
    xc: np.ndarray,
    draws: int,
    rng: np.random.Generator,
    weights: np.ndarray | None = None,
) -> np.ndarray:
    """``draws`` samples of the additive model's prediction at ``xc`` (draws x candidates):
    Bayesian ridge on the centred targets, the noise variance from the residuals. An
    observation of weight ``w`` (default 1) counts as one with ``1 / w`` times the noise."""
    import numpy as np

    wt = np.ones(len(y)) if weights is None else weights
    n = float(wt.sum())
    mean = float(wt @ y) / n
    yc = y - mean
    d = x.shape[1]
    inv = np.linalg.inv(x.T @ (wt[:, None] * x) + ACC_RIDGE * np.eye(d))
    w = inv @ x.T @ (wt * yc)
    res = yc - x @ w
    noise = max(float(wt * res @ res) / max(n - 1, 1), NOISE_FLOOR * float(wt * yc @ yc) / n, 1e-12)
    chol = np.linalg.cholesky(noise * inv + 1e-12 * np.eye(d))
    ws = w[None, :] + rng.standard_normal((draws, d)) @ chol.T
    return np.asarray(ws @ xc.T + mean)


def _cost_fit(x: np.ndarray, cost: np.ndarray, xc: np.ndarray) -> np.ndarray:
    """The fitted cost at ``xc``: least squares (nearly) of log cost, or of cost if not positive."""
    import numpy as np

    positive = bool((cost > 0).all())
    y = np.log(cost) if positive else cost
    mean = float(y.mean())
    w = np.linalg.solve(x.T @ x + COST_RIDGE * np.eye(x.shape[1]), x.T @ (y - mean))
    fit = xc @ w + mean
    return np.asarray(np.exp(fit) if positive else fit)
