"""One small registry type, used for every extension point (affinities, models, datasets).

A duplicate name is a bug and fails at import; a failed lookup lists the closest names.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from fnmatch import fnmatch
from typing import Generic, TypeVar

from affinity.errors import UnknownNameError, closest

T = TypeVar("T")


class Registry(Generic[T]):
    """Named entries of one kind.

    Args:
        kind: what the entries are, for messages ("model", "affinity", ...).
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str, entry: T) -> T:
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._entries[name] = entry
        return entry

    def decorator(self, name: str) -> Callable[[T], T]:
        """``@REG.decorator("name")`` registers the decorated class or function."""

        def wrap(entry: T) -> T:
            return self.register(name, entry)

        return wrap

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            near = closest(name, self._entries)
            hint = f"; did you mean {', '.join(near)}?" if near else ""
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}{hint} (known: {', '.join(sorted(self._entries))})"
            ) from None

    def names(self, pattern: str | None = None) -> list[str]:
        """Sorted names, optionally filtered by a shell-style ``pattern`` (``as_mlp*``)."""
        return sorted(n for n in self._entries if pattern is None or fnmatch(n, pattern))

    def matching(self, pattern: str | None, command: str) -> list[str]:
        """What a listing command (``command``) shows for PATTERN: every name, the names a shell
        pattern (``as_mlp*``) matches, or those containing a plain substring (``mlp``); an
        UnknownNameError naming the closest entries when none does."""
        glob = pattern if pattern is None or any(ch in pattern for ch in "*?[") else f"*{pattern}*"
        names = self.names(glob)
        if not names:
            near = closest(pattern or "", self._entries)
            hint = f"; closest: {', '.join(near)}" if near else ""
            raise UnknownNameError(
                f"no registered {self.kind} matches {pattern!r}{hint} (`{command}` lists all {len(self)})"
            )
        return names

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)
