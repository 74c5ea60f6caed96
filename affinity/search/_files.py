"""Finding a space file: a path first, then a shipped space by name; reading it."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from affinity.errors import SpaceError, closest

if TYPE_CHECKING:
    from affinity.search._schema import Space


def _package_spaces() -> dict[str, Path]:
    """The shipped spaces installed as package data ``affinity.search_spaces`` (a namespace
    package: no ``__init__.py``), by file name."""
    try:
        root = resources.files("affinity.search_spaces")
        found = {}
        for entry in root.iterdir():
            if entry.name.endswith(".yaml") and entry.is_file():
                with resources.as_file(entry) as real:  # a real file: its own path, kept
                    found[entry.name] = Path(real)
        return found
    except (ModuleNotFoundError, TypeError, OSError, NotImplementedError):
        return {}


def shipped_spaces_paths() -> dict[str, Path]:
    """Shipped spaces by file name: the installed package data, else the repo's folder."""
    found = _package_spaces()
    if not found:
        repo = Path(__file__).resolve().parents[2] / "search_spaces"
        found = {p.name: p for p in repo.glob("*.yaml")} if repo.is_dir() else {}
    return found


def resolve_space_path(name: str | Path) -> Path:
    """A path first, then a shipped space by file name (``shifts.yaml`` or ``shifts``)."""
    path = Path(name).expanduser()
    if path.is_file():
        return path
    found = shipped_spaces_paths()
    if path.name == str(name):
        for candidate in (path.name, f"{path.name}.yaml"):
            if candidate in found:
                return found[candidate]
    shipped = sorted(found)
    near = closest(str(name), shipped)
    hint = f"; did you mean {', '.join(near)}?" if near else ""
    raise SpaceError(
        f"--space: {str(name)!r} is neither a file nor a shipped space{hint} (shipped: {', '.join(shipped)})"
    )


def load_space(name: str | Path) -> Space:
    """Read, parse and validate a space file (a path, or a shipped space's name)."""
    from affinity._documents import load_yaml
    from affinity.search._parse import parse_space

    path = resolve_space_path(name)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SpaceError(f"{path}: cannot be read: {exc}") from None
    raw = load_yaml(text, str(path), SpaceError)
    if raw is None:
        raise SpaceError(f"{path}: the file is empty; allowed: a mapping with a model section")
    return parse_space(raw, source=str(path), default_name=path.stem)
