"""The data behind a study's report: leaderboard, front, importances, accuracy per parameter.

``collect(study)`` returns a ``StudyReport`` holding only data (a DataFrame, dicts, lists);
``affinity.report.pictures`` draws it and ``affinity.report.html`` lays it out. The
leaderboard and the Pareto ranks are the search's own (``affinity.search.leaderboard``), so
the report and ``affinity leaderboard`` never disagree.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import yaml

from affinity.errors import StudyError
from affinity.search.leaderboard import trial_accuracy

if TYPE_CHECKING:
    import optuna
    import pandas as pd

__all__ = ["Importances", "ParamSeries", "StudyReport", "collect", "importances", "param_series"]

#: Fewer finished trials than this and Optuna's fANOVA importances mean nothing.
MIN_TRIALS_FOR_IMPORTANCE = 3
#: A ranking resting on fewer trials than this is a hint, not a finding (the order of a
#: 30-trial study's importances could flip with two more trials); the report says so.
MIN_TRIALS_FOR_RANKING = 20
#: An integer parameter with at most this many values is drawn on a discrete axis.
MAX_DISCRETE_VALUES = 16


@dataclass
class ParamSeries:
    """Val accuracy against one searched parameter, over the finished trials that have it.

    Args:
        name: the parameter.
        kind: ``categorical``, ``discrete`` (an integer with few values: drawn like a
            categorical, one column per value) or ``numeric``.
        values: the parameter's value per trial.
        accuracy: the val accuracy per trial.
        trials: the trial numbers.
        log: numeric parameter searched on a log scale.
        choices: the values a categorical or discrete parameter can take, in order.
    """

    name: str
    kind: str
    values: list[Any]
    accuracy: list[float]
    trials: list[int]
    log: bool = False
    choices: list[Any] = field(default_factory=list)


@dataclass
class Importances:
    """Parameter importances for val accuracy, each over the trials where it exists.

    Args:
        values: parameter -> fANOVA's share of the val-accuracy variance its main effect
            explains (0 to 1, not normalised), among the trials where it exists.
        trials: parameter -> how many distinct finished trials that figure rests on.
        note: what was left out and why, and which figures rest on too few trials.
    """

    values: dict[str, float] = field(default_factory=dict)
    trials: dict[str, int] = field(default_factory=dict)
    note: str = ""


@dataclass
class StudyReport:
    """Everything the report shows, as data.

    Args:
        name: the study.
        directions: Optuna's directions (``maximize`` accuracy, then ``minimize`` GFLOPs).
        leaderboard: one row per trial (the search's leaderboard, duplicates included).
        points: per distinct finished trial with both figures (every finished trial with
            ``with_duplicates``): ``number``, ``accuracy`` (the mean over its seeds), ``gflops``,
            ``std`` (seed-to-seed std; NaN for one seed), ``front``.
        importances: parameter importances for val accuracy, with the trials each rests on.
        params: accuracy per searched parameter (distinct trials, as ``points``).
        front_configs: ``(trial number, YAML text)`` per trial on the front (duplicates of an
            earlier front trial left out, as the search's ``front/`` folder does).
        trial_params: the searched parameters of each front trial.
        duplicates: how many duplicate trials the plots leave out (0 with ``with_duplicates``).
        provenance: versions, platform, device and git commit that produced the study
            (``affinity.search.provenance``); None for a study from before it was recorded.
        hypervolume: ``(label, curve)`` per study compared, this one first: the hypervolume
            of the feasible trials up to each trial number (``affinity.search.hypervolume``),
            every curve at the same reference point; empty for a single-objective study.
        hv_ref_gflops: that reference point's GFLOPs (its val accuracy is 0).
    """

    name: str
    directions: list[str]
    leaderboard: pd.DataFrame
    points: pd.DataFrame
    importances: Importances
    params: list[ParamSeries]
    front_configs: list[tuple[int, str]]
    trial_params: dict[int, dict[str, Any]] = field(default_factory=dict)
    duplicates: int = 0
    provenance: dict[str, Any] | None = None
    hypervolume: list[tuple[str, list[tuple[int, float]]]] = field(default_factory=list)
    hv_ref_gflops: float | None = None


def _finished(study: optuna.Study, with_duplicates: bool) -> list[optuna.trial.FrozenTrial]:
    """COMPLETE trials with a val accuracy; a duplicate (the same configuration as an earlier
    trial, its result reused) only when ``with_duplicates``."""
    import optuna

    return [
        t
        for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        if trial_accuracy(t) is not None and (with_duplicates or t.user_attrs.get("status") != "duplicate")
    ]


def importances(study: optuna.Study, *, with_duplicates: bool = False) -> Importances:
    """Optuna's fANOVA importance of each searched parameter for val accuracy, conditional
    parameters included: each parameter is evaluated on the trials where it exists (with the
    parameters that exist in all of those trials and vary there), so a shift size is ranked
    among the axial-shift trials instead of being left out.

    Too few trials, or parameters that never changed, give a note instead of an error.
    """

    done = _finished(study, with_duplicates)
    if len(done) < MIN_TRIALS_FOR_IMPORTANCE:
        return Importances(
            note=f"parameter importances need at least {MIN_TRIALS_FOR_IMPORTANCE} finished trials; "
            f"this study has {len(done)}"
        )
    names = sorted(set().union(*(t.params for t in done)))

    def having(name: str) -> list[optuna.trial.FrozenTrial]:
        return [t for t in done if name in t.params]

    def varies(name: str, trials: list[optuna.trial.FrozenTrial]) -> bool:
        return len({repr(t.params[name]) for t in trials}) > 1

    varied = [n for n in names if varies(n, having(n))]
    notes = []
    constant = [n for n in names if n not in varied]
    if constant:
        notes.append("took one value only (no importance): " + ", ".join(constant))
    groups: dict[tuple[int, ...], list[str]] = {}  # the trials a parameter exists in -> parameters
    for name in varied:
        groups.setdefault(tuple(t.number for t in having(name)), []).append(name)
    result = Importances()
    for numbers, members in groups.items():
        trials = [t for t in done if t.number in set(numbers)]
        if len(trials) < MIN_TRIALS_FOR_IMPORTANCE:
            notes.append(f"{', '.join(members)}: only {len(trials)} trials have it")
            continue
        if len({trial_accuracy(t) for t in trials}) == 1:
            notes.append(f"{', '.join(members)}: every trial with it has the same val accuracy")
            continue
        context = [n for n in varied if all(n in t.params for t in trials) and varies(n, trials)]
        try:
            imp = _fanova(study, trials, context)
        except (ValueError, RuntimeError) as exc:  # Optuna's own "cannot evaluate" cases
            notes.append(f"{', '.join(members)}: Optuna could not compute importances: {exc}")
            continue
        for name in members:
            result.values[name] = float(imp[name])
            result.trials[name] = len(trials)
    if not result.values and not notes:
        notes.append("no parameter varied across the finished trials")
    result.values = dict(sorted(result.values.items(), key=lambda kv: -kv[1]))
    thin = [f"{n} ({result.trials[n]})" for n in result.values if result.trials[n] < MIN_TRIALS_FOR_RANKING]
    if thin:
        notes.append(
            f"resting on fewer than {MIN_TRIALS_FOR_RANKING} trials, so the order may change with "
            "a few more: " + ", ".join(thin)
        )
    result.note = "; ".join(notes)
    return result


def _fanova(
    study: optuna.Study, trials: list[optuna.trial.FrozenTrial], params: list[str]
) -> dict[str, float]:
    """fANOVA's unnormalised importances of ``params`` over ``trials`` (held in a throwaway
    in-memory study), without Optuna's log lines and experimental-feature warnings."""
    import warnings

    import optuna

    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            sub = optuna.create_study(directions=study.directions)
            sub.add_trials(trials)
            return optuna.importance.get_param_importances(
                sub,
                evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0),
                params=params,
                target=_accuracy_target,
                normalize=False,
            )
    finally:
        optuna.logging.set_verbosity(verbosity)


def _accuracy_target(trial: optuna.trial.FrozenTrial) -> float:
    acc = trial_accuracy(trial)
    return float("nan") if acc is None else acc


def param_series(study: optuna.Study, *, with_duplicates: bool = False) -> list[ParamSeries]:
    """Val accuracy against each searched parameter (finished trials, each configuration once
    unless ``with_duplicates``), by parameter name."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    series: dict[str, ParamSeries] = {}
    for t in _finished(study, with_duplicates):
        acc = trial_accuracy(t)
        assert acc is not None  # _finished keeps trials with an accuracy
        for name, value in t.params.items():
            dist = t.distributions[name]
            if name not in series:
                if isinstance(dist, CategoricalDistribution):
                    series[name] = ParamSeries(name, "categorical", [], [], [], choices=list(dist.choices))
                elif (
                    isinstance(dist, IntDistribution)
                    and not dist.log
                    and (dist.high - dist.low) // dist.step < MAX_DISCRETE_VALUES
                ):
                    choices = list(range(dist.low, dist.high + 1, dist.step))
                    series[name] = ParamSeries(name, "discrete", [], [], [], choices=choices)
                else:
                    log = isinstance(dist, (FloatDistribution, IntDistribution)) and dist.log
                    series[name] = ParamSeries(name, "numeric", [], [], [], log=log)
            s = series[name]
            s.values.append(value)
            s.accuracy.append(acc)
            s.trials.append(t.number)
    return [series[k] for k in sorted(series)]


def _config_yaml(trial: optuna.trial.FrozenTrial) -> str:
    """The trial's model configuration as YAML (the search stores it), else its parameters."""
    cfg = trial.user_attrs.get("config")
    if isinstance(cfg, dict):  # as front/trial_<n>.yaml holds it: `affinity profile` reads it
        return yaml.safe_dump({"model": cfg}, sort_keys=False)
    return yaml.safe_dump({"params": dict(trial.params)}, sort_keys=False)


def collect(
    study: optuna.Study,
    leaderboard: pd.DataFrame | None = None,
    *,
    with_duplicates: bool = False,
    compare: Sequence[optuna.Study] = (),
) -> StudyReport:
    """Gather the report's data from ``study``.

    Args:
        study: an Optuna study written by ``affinity search`` (or any study whose first
            objective is val accuracy; GFLOPs is its second objective or the ``gflops``
            user attribute).
        leaderboard: the search's leaderboard of ``study``; built with
            ``affinity.search.leaderboard.build_leaderboard`` when omitted.
        with_duplicates: plot and rank every finished trial, duplicates of an earlier
            configuration too (by default each configuration counts once).
        compare: other studies whose hypervolume curves are drawn beside this one's (e.g.
            the same space searched with other samplers or seeds).
    """
    import pandas as pd

    if not study.trials:
        raise StudyError(f"study {study.study_name!r} has no trials yet: nothing to report")
    if leaderboard is None:
        from affinity.search.leaderboard import build_leaderboard

        leaderboard = build_leaderboard(study)
    from affinity.search.leaderboard import front_numbers

    directions = [d.name.lower() for d in study.directions]
    front = set(front_numbers(leaderboard))
    shown = leaderboard[(leaderboard["state"] == "COMPLETE")]
    duplicates = int((shown["status"] == "duplicate").sum())
    if not with_duplicates:
        shown = shown[shown["status"] != "duplicate"]
    rows = shown[["number", "val_acc", "val_acc_std", "gflops"]].dropna(subset=["val_acc", "gflops"])
    points = pd.DataFrame(
        {
            "number": rows["number"].astype(int).to_numpy(),
            "accuracy": rows["val_acc"].astype(float).to_numpy(),
            "gflops": rows["gflops"].astype(float).to_numpy(),
            "std": rows["val_acc_std"].astype(float).to_numpy(),  # NaN for one seed
        }
    )
    points["front"] = points["number"].isin(front)
    by_number = {t.number: t for t in study.trials}
    front_configs = [(n, _config_yaml(by_number[n])) for n in front_numbers(leaderboard)]
    return StudyReport(
        name=study.study_name,
        directions=directions,
        leaderboard=leaderboard,
        points=points,
        importances=importances(study, with_duplicates=with_duplicates),
        params=param_series(study, with_duplicates=with_duplicates),
        front_configs=front_configs,
        trial_params={n: dict(by_number[n].params) for n, _ in front_configs},
        duplicates=0 if with_duplicates else duplicates,
        provenance=study.user_attrs.get("provenance"),
        **_hypervolumes(study, leaderboard, compare),
    )


def _hypervolumes(
    study: optuna.Study, leaderboard: pd.DataFrame, compare: Sequence[optuna.Study]
) -> dict[str, Any]:
    """The ``hypervolume`` and ``hv_ref_gflops`` fields: a curve per study at one reference
    point, the largest of the studies' own (so every study's costliest design adds area)."""
    from affinity.search.hypervolume import hypervolume_curve, reference_gflops
    from affinity.search.leaderboard import build_leaderboard

    if len(study.directions) != 2:
        return {}
    boards = [(study, leaderboard)] + [(s, build_leaderboard(s)) for s in compare if len(s.directions) == 2]
    refs = [r for r in (reference_gflops(b) for _, b in boards) if r is not None]
    if not refs:
        return {}
    ref = max(refs)
    curves = []
    for st, board in boards:
        sampler = st.user_attrs.get("affinity", {}).get("sampler")
        label = f"{st.study_name} ({sampler})" if sampler else st.study_name
        curves.append((label, hypervolume_curve(board, ref)))
    return {"hypervolume": curves, "hv_ref_gflops": ref}


def open_study(name: str, storage: str | None = None) -> optuna.Study:
    """Load study ``name`` as ``affinity search`` stores it (see ``affinity.search.study.load_study``)."""
    from affinity.search.study import load_study

    return load_study(name, storage)
