"""A study resumed with an edited space file: what changed, and whether Optuna can take it.

A study records the ``model`` section of the space file it was created from. Resuming it
with another one is refused, one line per difference (key path, old -> new), before anything
is written or recorded: the trials so far were drawn from the old space, and Optuna itself
fails mid-trial on some changes. ``--allow-space-change`` takes the changes Optuna can:
moved ranges, new or removed parameters, other fixed values. It cannot take a parameter whose
choices, kind (choice, int, float) or log scale changed: Optuna fixes those for the life of a
study (``CategoricalDistribution does not support dynamic value space``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from affinity.errors import StudyError

if TYPE_CHECKING:
    import optuna

    from affinity.search.space import Space

__all__ = ["check_space_change", "differences", "model_document"]

_ABSENT = object()


def model_document(space: Space) -> dict[str, Any] | None:
    """The ``model`` section of the file ``space`` was read from, as JSON values (what the
    study records); None for a space that was not read from a file."""
    import yaml

    try:
        raw = yaml.safe_load(Path(space.source).read_text(encoding="utf-8")) if space.source else None
        model = raw.get("model") if isinstance(raw, Mapping) else None
        return json.loads(json.dumps(model, default=str)) if isinstance(model, Mapping) else None
    except (OSError, UnicodeDecodeError, yaml.YAMLError, ValueError, RecursionError):
        return None  # the file changed since it was parsed: nothing to compare against


def differences(old: Any, new: Any, path: str) -> list[str]:
    """``path.key: old -> new`` for every leaf that differs (mappings compared key by key,
    anything else whole; ``1``, ``1.0`` and ``true`` differ)."""
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        found: list[str] = []
        for key in [*old, *(k for k in new if k not in old)]:
            found += differences(old.get(key, _ABSENT), new.get(key, _ABSENT), f"{path}.{key}")
        return found
    if _show(old) == _show(new):
        return []
    return [f"{path}: {_show(old)} -> {_show(new)}"]


def _show(value: Any) -> str:
    """A value as a YAML flow would write it: ``{choice: [1, 3]}``, ``zero``, ``true``."""
    if value is _ABSENT:
        return "(absent)"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k}: {_show(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    return value if isinstance(value, str) else json.dumps(value)


def _describe(dist: Any) -> str:
    from optuna.distributions import CategoricalDistribution

    if isinstance(dist, CategoricalDistribution):
        return f"choice {_show(list(dist.choices))}"
    form = "int" if type(dist).__name__.startswith("Int") else "float"
    return f"{form} [{_show(dist.low)}, {_show(dist.high)}]" + (" log" if dist.log else "")


def _optuna_refusals(study: optuna.Study, space: Space) -> list[str]:
    """``name: old -> new`` for each parameter whose distribution the study's trials fix and
    the space changes in a way Optuna refuses."""
    from optuna.distributions import check_distribution_compatibility

    from affinity.search._sampling import parameters
    from affinity.search.params import distribution

    recorded: dict[str, Any] = {}
    for trial in study.get_trials(deepcopy=False):
        for name, dist in trial.distributions.items():
            recorded.setdefault(name, dist)
    refused = []
    for name, value in parameters(space).items():
        if name not in recorded:
            continue
        new = distribution(value)
        try:
            check_distribution_compatibility(recorded[name], new)
        except ValueError:
            refused.append(f"{name}: {_describe(recorded[name])} -> {_describe(new)}")
    return refused


def check_space_change(study: optuna.Study, space: Space, *, allow: bool) -> dict[str, Any] | None:
    """Refuse to resume ``study`` with a ``space`` it was not created from.

    Returns:
        the space's ``model`` document when it differs from the study's record and ``allow``
        is set (the caller records it as the study's space); None when nothing changed.

    Raises:
        StudyError: a changed space without ``allow`` (one line per difference), or a change
            Optuna cannot take (one line per such parameter).
    """
    name = study.study_name
    refused = _optuna_refusals(study, space)
    if allow and refused:
        raise StudyError(
            f"study {name!r}: --allow-space-change cannot take {len(refused)} change(s); Optuna keeps a "
            "parameter's choices, kind and log scale for the life of a study:\n  "
            + "\n  ".join(refused)
            + "\nallowed: a new --study NAME, or the space the study was created from"
        )
    document = model_document(space)
    recorded = study.user_attrs.get("affinity", {}).get("model")
    changed = differences(recorded, document, "model") if recorded is not None and document else []
    lines = changed or refused
    if not lines:
        return None
    if not allow:
        names = ", ".join(line.split(":")[0] for line in refused)
        hint = f" (not for {names}: Optuna cannot take that change)" if refused else ""
        raise StudyError(
            f"study {name!r} was created from another space; resuming it with this one is refused "
            f"({len(lines)} difference(s)):\n  "
            + "\n  ".join(lines)
            + f"\nallowed: the same space, a new --study NAME, or --allow-space-change{hint}"
        )
    return document
