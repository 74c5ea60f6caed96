"""How an affinity declares its hyperparameters, once: name, default, rule, one-line meaning.

An ``Affinity`` subclass lists ``Param``s in its ``params`` class attribute. Everything else
reads that tuple: the constructor's validation (``Affinity.__init__``), ``affinity
affinities``, the search's mixer kinds and the names a space file may set, model-config
overrides, and the README's kinds table. A ``Rule`` is a predicate with the words for what
it allows and the type it admits; the helpers below cover the common ones.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from affinity.errors import ConfigError, is_int

__all__ = [
    "BOOL",
    "NUMBER",
    "POSITIVE_NUMBER",
    "Inert",
    "Param",
    "Rule",
    "at_least",
    "odd",
    "one_of",
    "optional",
]


@dataclass(frozen=True)
class Rule:
    """What a value may be.

    Args:
        ok: the predicate.
        allowed: what it allows, in words ("an odd integer >= 1"); messages end with it.
        type: the type it admits, as the docs write it (``int``, ``str``, ``int | None``).
    """

    ok: Callable[[Any], bool]
    allowed: str
    type: str


def at_least(minimum: int) -> Rule:
    """An integer (not a bool) >= ``minimum``."""
    return Rule(lambda v: is_int(v, minimum), f"an integer >= {minimum}", "int")


def odd(minimum: int = 1) -> Rule:
    """An odd integer >= ``minimum``."""
    return Rule(lambda v: is_int(v, minimum) and v % 2 == 1, f"an odd integer >= {minimum}", "int")


def one_of(choices: Sequence[Any]) -> Rule:
    """One of ``choices`` (strings, as a YAML file writes them)."""
    choices = tuple(choices)
    allowed = f"one of {', '.join(map(str, choices))}"
    return Rule(lambda v: isinstance(v, str) and v in choices, allowed, "str")


def optional(rule: Rule, meaning: str) -> Rule:
    """``None`` (which means ``meaning``) or what ``rule`` allows."""
    allowed = f"null ({meaning}) or {rule.allowed}"
    return Rule(lambda v: v is None or rule.ok(v), allowed, f"{rule.type} | None")


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


BOOL = Rule(lambda v: isinstance(v, bool), "true or false", "bool")
NUMBER = Rule(_is_number, "a number", "float")
POSITIVE_NUMBER = Rule(lambda v: _is_number(v) and v > 0, "a number > 0", "float")


@dataclass(frozen=True)
class Param:
    """One hyperparameter of an affinity (or of a search kind or mixer).

    Args:
        name: its one name everywhere: constructor keyword, ``BranchCfg.params`` key, space
            file key, override key.
        default: the value when it is not given.
        rule: what it allows.
        help: one line: what it means.
        search: a search space may set it on this affinity's own kind; False for
            structural parameters another part of the mixer sets (an axis, a token count).
    """

    name: str
    default: Any
    rule: Rule
    help: str
    search: bool = True

    @property
    def ok(self) -> Callable[[Any], bool]:
        return self.rule.ok

    @property
    def allowed(self) -> str:
        return self.rule.allowed

    def check(self, value: Any) -> Any:
        """``value`` when the rule allows it, else ``ConfigError`` naming the parameter."""
        if not self.rule.ok(value):
            raise ConfigError(f"{self.name}={value!r} is not allowed: {self.rule.allowed}")
        return value

    def describe(self) -> dict[str, Any]:
        """The declaration as data (``affinity affinities --format json``)."""
        return {
            "name": self.name,
            "type": self.rule.type,
            "default": self.default,
            "allowed": self.rule.allowed,
            "help": self.help,
        }


@dataclass(frozen=True)
class Inert:
    """Parameters that cannot change what is computed while ``when`` holds.

    The search hashes configurations in canonical form, with such parameters removed, so
    proposals that differ only in them are duplicates (``affinity.ops.canonical``).

    Args:
        params: the inert parameters.
        when: a predicate of the values (an affinity's: every declared parameter, defaults
            filled in).
        reason: one line: why they change nothing (a test builds both forms for each rule).
    """

    params: tuple[str, ...]
    when: Callable[[Mapping[str, Any]], bool]
    reason: str


def resolve(params: Sequence[Param], given: dict[str, Any], owner: str) -> dict[str, Any]:
    """Every declared parameter's value: ``given`` checked against its rule, else its default.

    Args:
        params: the declaration.
        given: the values passed.
        owner: what declares them, for the message about an undeclared name.

    Raises:
        ConfigError: an undeclared name (listing the declared ones), or a value its rule
            does not allow.
    """
    names = [p.name for p in params]
    for key in given:
        if key not in names:
            raise ConfigError(
                f"{key}={given[key]!r} is not a parameter of {owner}: allowed {', '.join(names) or 'none'}"
            )
    return {p.name: p.check(given[p.name]) if p.name in given else p.default for p in params}
