"""The data behind a study's report: leaderboard, front, importances, accuracy per parameter.

``collect(study)`` returns a ``StudyReport`` holding only data (a DataFrame, dicts, lists);
``affinity.report.pictures`` draws it and ``affinity.report.html`` lays it out. The
leaderboard and the Pareto ranks are the search's own (``affinity.search.leaderboard``), so
the report and ``affinity leaderboard`` never disagree.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import yaml

from affinity.errors import StudyError
from affinity.search.leaderboard import trial_accuracy

if TYPE_CHECKING:
    import optuna
    import pandas as pd

__all__ = ["ParamSeries", "StudyReport", "collect", "importances", "param_series"]

#: Fewer finished trials than this and Optuna's fANOVA importances mean nothing.
MIN_TRIALS_FOR_IMPORTANCE = 3


@dataclass
class ParamSeries:
    """Val accuracy against one searched parameter, over the finished trials that have it.

    Args:
        name: the parameter.
        kind: ``categorical`` or ``numeric``.
        values: the parameter's value per trial.
        accuracy: the val accuracy per trial.
        trials: the trial numbers.
        log: numeric parameter searched on a log scale.
        choices: a categorical parameter's choices, in the space's order.
    """

    name: str
    kind: str
    values: list[Any]
    accuracy: list[float]
    trials: list[int]
    log: bool = False
    choices: list[Any] = field(default_factory=list)


@dataclass
class StudyReport:
    """Everything the report shows, as data.

    Args:
        name: the study.
        directions: Optuna's directions (``maximize`` accuracy, then ``minimize`` GFLOPs).
        leaderboard: one row per trial (the search's leaderboard).
        points: per finished trial with both figures: ``number``, ``accuracy``, ``gflops``,
            ``front`` (on the Pareto front).
        importances: parameter -> importance for val accuracy (empty when not computable).
        importance_note: why importances are missing or partial.
        params: accuracy per searched parameter.
        front_configs: ``(trial number, YAML text)`` per trial on the front (duplicates of an
            earlier front trial left out, as the search's ``front/`` folder does).
        trial_params: the searched parameters of each front trial.
    """

    name: str
    directions: list[str]
    leaderboard: pd.DataFrame
    points: pd.DataFrame
    importances: dict[str, float]
    importance_note: str
    params: list[ParamSeries]
    front_configs: list[tuple[int, str]]
    trial_params: dict[int, dict[str, Any]] = field(default_factory=dict)


def importances(study: optuna.Study) -> tuple[dict[str, float], str]:
    """Optuna's fANOVA importances of each parameter for val accuracy, and a note.

    Too few finished trials, or parameters that never changed, give a note instead of an
    error: importances need variation to explain.
    """
    import optuna

    done = [
        t
        for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        if trial_accuracy(t) is not None
    ]
    if len(done) < MIN_TRIALS_FOR_IMPORTANCE:
        return {}, (
            f"parameter importances need at least {MIN_TRIALS_FOR_IMPORTANCE} finished trials; "
            f"this study has {len(done)}"
        )
    in_all = set.intersection(*(set(t.params) for t in done))
    varied = sorted(p for p in in_all if len({repr(t.params[p]) for t in done}) > 1)
    notes = []
    constant = sorted(in_all - set(varied))
    if constant:
        notes.append("took one value only (no importance): " + ", ".join(constant))
    conditional = sorted(set().union(*(t.params for t in done)) - in_all)
    if conditional:
        notes.append("not in every trial (conditional, left out): " + ", ".join(conditional))
    if not varied:
        return {}, "; ".join(["no parameter varied across the finished trials", *notes])
    if len({trial_accuracy(t) for t in done}) == 1:
        return {}, "; ".join(["every finished trial has the same val accuracy: nothing to explain", *notes])
    evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
    try:
        imp = optuna.importance.get_param_importances(
            study, evaluator=evaluator, params=varied, target=_accuracy_target, normalize=True
        )
    except (ValueError, RuntimeError) as exc:  # Optuna's own "cannot evaluate" cases
        return {}, "; ".join([f"Optuna could not compute importances: {exc}", *notes])
    return {k: float(v) for k, v in imp.items()}, "; ".join(notes)


def _accuracy_target(trial: optuna.trial.FrozenTrial) -> float:
    acc = trial_accuracy(trial)
    return float("nan") if acc is None else acc


def param_series(study: optuna.Study) -> list[ParamSeries]:
    """Val accuracy against each searched parameter (finished trials only), by parameter name."""
    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    series: dict[str, ParamSeries] = {}
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        acc = trial_accuracy(t)
        if acc is None:
            continue
        for name, value in t.params.items():
            dist = t.distributions[name]
            if name not in series:
                if isinstance(dist, CategoricalDistribution):
                    series[name] = ParamSeries(name, "categorical", [], [], [], choices=list(dist.choices))
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


def collect(study: optuna.Study, leaderboard: pd.DataFrame | None = None) -> StudyReport:
    """Gather the report's data from ``study``.

    Args:
        study: an Optuna study written by ``affinity search`` (or any study whose first
            objective is val accuracy; GFLOPs is its second objective or the ``gflops``
            user attribute).
        leaderboard: the search's leaderboard of ``study``; built with
            ``affinity.search.leaderboard.build_leaderboard`` when omitted.
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
    rows = leaderboard[["number", "val_acc", "gflops"]].dropna(subset=["val_acc", "gflops"])
    rows = rows[leaderboard.loc[rows.index, "state"] == "COMPLETE"]
    points = pd.DataFrame(
        {
            "number": rows["number"].astype(int).to_numpy(),
            "accuracy": rows["val_acc"].astype(float).to_numpy(),
            "gflops": rows["gflops"].astype(float).to_numpy(),
        }
    )
    points["front"] = points["number"].isin(front)
    by_number = {t.number: t for t in study.trials}
    front_configs = [(n, _config_yaml(by_number[n])) for n in front_numbers(leaderboard)]
    imp, note = importances(study)
    return StudyReport(
        name=study.study_name,
        directions=directions,
        leaderboard=leaderboard,
        points=points,
        importances=imp,
        importance_note=note,
        params=param_series(study),
        front_configs=front_configs,
        trial_params={n: dict(by_number[n].params) for n, _ in front_configs},
    )


def open_study(name: str, storage: str | None = None) -> optuna.Study:
    """Load study ``name`` as ``affinity search`` stores it (see ``affinity.search.study.load_study``)."""
    from affinity.search.study import load_study

    return load_study(name, storage)
