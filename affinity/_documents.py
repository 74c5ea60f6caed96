"""Reading a YAML document a user wrote (space files, model configs, run settings) into
plain values, refusing what would make every later step fail with a traceback: invalid
YAML, an alias inside its own anchor (a list or mapping that contains itself), and documents
nested or aliased beyond any sensible size (``[[[[...`` thousands deep, an alias bomb)."""

from __future__ import annotations

from typing import Any

from affinity.errors import AffinityError, yaml_problem

#: deepest nesting a document may have (the deepest shipped file has 5 levels)
MAX_DEPTH = 40
#: most lists, mappings and values a document may expand to, aliases counted each time used
MAX_NODES = 100_000


def load_yaml(text: str, where: str, error: type[AffinityError]) -> Any:
    """``yaml.safe_load(text)``, checked to be a finite tree of sensible size.

    Args:
        text: the document.
        where: the file, for messages (``where: not valid YAML: line 3, column 1: ...``).
        error: the ``AffinityError`` subclass to raise.
    """
    import yaml

    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise error(f"{where}: not valid YAML: {yaml_problem(exc)}") from None
    except RecursionError:
        raise error(
            f"{where}: not valid YAML: nested too deeply; allowed: at most {MAX_DEPTH} levels"
        ) from None
    _check_tree(doc, "", set(), [0], where, error)
    return doc


def _check_tree(
    node: Any, path: str, ancestors: set[int], count: list[int], where: str, error: type[AffinityError]
) -> None:
    count[0] += 1
    if count[0] > MAX_NODES:
        raise error(
            f"{where}: expands to more than {MAX_NODES} values (aliases counted each time used); "
            "allowed: a smaller file"
        )
    if not isinstance(node, (dict, list)):
        return
    shown = path or "the document"
    if id(node) in ancestors:
        raise error(
            f"{where}: {shown} contains itself (a YAML alias inside its own anchor); "
            "allowed: a tree of values"
        )
    if len(ancestors) >= MAX_DEPTH:
        raise error(
            f"{where}: {shown} is nested more than {MAX_DEPTH} levels deep; allowed: at most {MAX_DEPTH}"
        )
    ancestors.add(id(node))
    items = node.items() if isinstance(node, dict) else enumerate(node)
    for key, value in items:
        _check_tree(
            value,
            (f"{path}.{key}" if path else str(key)) if isinstance(node, dict) else f"{path}[{key}]",
            ancestors,
            count,
            where,
            error,
        )
    ancestors.discard(id(node))
