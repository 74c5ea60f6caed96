"""One exception hierarchy. The CLI turns any ``AffinityError`` into one line and exit code 2.

A message names the offending key, file or parameter, the value given and what is allowed,
because it is all the user will see.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable


class AffinityError(Exception):
    """Base of every error affinity raises on purpose (bad input, not bugs)."""


class ConfigError(AffinityError, ValueError):
    """An impossible hyperparameter or architecture field (raised at construction)."""


class UnknownNameError(AffinityError, KeyError):
    """A registry lookup failed (model, affinity, dataset, search space)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class DataError(AffinityError):
    """A dataset path, file or array that is missing or not in the expected layout."""


class SpaceError(AffinityError):
    """A malformed search-space file: the message starts with the key path."""


class StudyError(AffinityError):
    """A study that cannot be opened, resumed or reported."""


def closest(name: str, choices: Iterable[str], n: int = 3) -> list[str]:
    """Up to ``n`` registered names closest to ``name`` (for 'did you mean' lines)."""
    choices = list(choices)
    found = difflib.get_close_matches(name, choices, n=n, cutoff=0.5)
    if not found:
        found = [c for c in choices if name.lower() in c.lower()][:n]
    return found


def check(condition: bool, param: str, value: object, allowed: str) -> None:
    """Raise ``ConfigError`` naming ``param``, the ``value`` given and what is ``allowed``."""
    if not condition:
        raise ConfigError(f"{param}={value!r} is not allowed: {allowed}")


def is_int(value: object, minimum: int) -> bool:
    """True for an int (not a bool) ≥ ``minimum``."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def check_int(param: str, value: object, minimum: int, allowed: str | None = None) -> int:
    """``value`` as an int ≥ ``minimum``; else ``ConfigError`` naming ``param``."""
    check(is_int(value, minimum), param, value, allowed or f"an integer >= {minimum}")
    return int(value)  # type: ignore[call-overload]


#: a study or space name: it becomes a folder under the results root
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def check_name(key: str, value: object, error: type[AffinityError] = ConfigError) -> str:
    """``value`` when it can name a folder (a study, a space); else ``error`` naming ``key``."""
    if not isinstance(value, str) or not NAME_PATTERN.fullmatch(value):
        raise error(f"{key}: {value!r} is not allowed; allowed: letters, digits, _ . - (a folder name)")
    return value


def yaml_problem(exc: Exception) -> str:
    """A YAML parser error as one line: ``line L, column C: problem`` (PyYAML's own text
    spans several lines with a caret drawing, which would break the one-line rule)."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or (str(exc).splitlines() or ["unreadable"])[0]
    return f"line {mark.line + 1}, column {mark.column + 1}: {problem}" if mark is not None else problem
