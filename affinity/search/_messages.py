"""The wording every search-space error shares: a value shown as the file wrote it, an
unknown key with its closest matches, a section that must be a mapping."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from affinity.errors import SpaceError, closest


def show(value: Any) -> str:
    """``value`` as JSON (as the YAML file wrote it), else its repr."""
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)


def unknown_key(key: Any, path: str, allowed: tuple[str, ...] | list[str]) -> SpaceError:
    near = closest(str(key), allowed)
    hint = f" (did you mean {', '.join(near)}?)" if near else ""
    # a key with a line break or a control character is shown quoted: the message stays one line
    name = key if isinstance(key, str) and key.isprintable() and key.strip() else show(key)
    where = f"{path}.{name}" if path else name
    return SpaceError(f"{where}: unknown key{hint}; allowed: {', '.join(allowed)}")


def mapping(raw: Any, path: str, what: str = "a mapping") -> Mapping[str, Any]:
    if not isinstance(raw, Mapping):
        raise SpaceError(f"{path}: {show(raw)} is not allowed; allowed: {what}")
    return raw
