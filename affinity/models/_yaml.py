"""Model-config YAML files: ``load_model_config`` / ``save_model_config``. Public through
``affinity.models.config``."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from affinity._io import atomic_write_text
from affinity.errors import ConfigError
from affinity.models._schema import ModelCfg


def _to_yaml_value(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _to_yaml_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_yaml_value(v) for v in value]
    return value


def load_model_config(path: str | Path) -> ModelCfg:
    """Read a model-config YAML file (top-level key ``model``, or the fields directly).

    Raises:
        ConfigError: the file is missing, not YAML, or holds an unknown/invalid field (the
            message starts with the key path, e.g. ``model.stages[2].mixer...``).
    """
    from affinity._documents import load_yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(
            f"model config {str(path)!r} is not a file: give a registered model name or a YAML path"
        )
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"model config {str(path)!r} cannot be read: {exc}") from None
    data = load_yaml(text, f"model config {str(path)!r}", ConfigError)
    if isinstance(data, Mapping) and "model" in data:
        # the keys beside ``model`` are run settings, read and checked by affinity.train.runfile
        data = data["model"]
    return ModelCfg.from_dict(data, "model")


def save_model_config(cfg: ModelCfg, path: str | Path) -> Path:
    """Write ``cfg`` as YAML under the key ``model`` (read back by ``load_model_config``)."""
    import yaml

    text = yaml.safe_dump({"model": _to_yaml_value(cfg.to_dict())}, sort_keys=False)
    return atomic_write_text(path, text)
