"""The run settings a YAML file may carry beside a model: what to train it on and how.

One format for every file that holds them: a model config written by the search (its front
configurations), a ``affinity train --config FILE.yaml``, and (with more sections) a search
space::

    model: {...}            # the model config (load_model_config's format)
    dataset: digits         # the data: a dataset spec and the image side
    img_size: 16
    seed: 0                 # TrainConfig.seed
    budget:                 # any other TrainConfig field but device and threads
      epochs: 2
      batch_size: 64
      lr: 0.005

Each value is checked by the rule ``TrainConfig`` declares for it. ``affinity train`` and
``affinity profile`` read them; command-line flags override them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from affinity._io import atomic_write_text
from affinity.errors import ConfigError
from affinity.train.config import BUDGET_KEYS, DATA_RULES, check_value

if TYPE_CHECKING:
    from affinity.models.config import ModelCfg

__all__ = ["TOP_KEYS", "RunConfig", "load_run_config", "run_config_text", "save_run_config"]

#: the run settings a file sets at its top level (the rest go under ``budget:``)
TOP_KEYS = (*DATA_RULES, "seed")


@dataclass(frozen=True)
class RunConfig:
    """A run-config file read back.

    Attributes:
        model: the model config; None where the file has no ``model`` section (a
            ``--config`` file).
        settings: the run settings the file sets, flat (``dataset``, ``img_size``, ``seed``
            and TrainConfig fields), checked and converted; the others are not in it.
    """

    model: ModelCfg | None
    settings: dict[str, Any] = field(default_factory=dict)


def split_settings(settings: Mapping[str, Any], where: str = "settings") -> dict[str, Any]:
    """Flat settings -> the file's layout (top-level keys, then ``budget``), each checked."""
    doc: dict[str, Any] = {}
    budget: dict[str, Any] = {}
    for key, value in settings.items():
        if key in TOP_KEYS:
            doc[key] = check_value(key, value, where="", keys=[*TOP_KEYS, *BUDGET_KEYS])
        else:
            budget[key] = check_value(key, value, where, keys=[*TOP_KEYS, *BUDGET_KEYS])
    if budget:
        doc["budget"] = budget
    return doc


def run_config_text(model: ModelCfg, settings: Mapping[str, Any], header: str = "") -> str:
    """The YAML text of a run config: ``model`` then the run settings.

    Args:
        model: the model config.
        settings: flat run settings (``dataset``, ``img_size``, ``seed`` and TrainConfig
            fields but device and threads), e.g. a search's training settings.
        header: comment lines put first (each gets ``# ``).
    """
    import yaml

    plain = json.loads(json.dumps(model.to_dict()))  # tuples -> lists, as YAML writes them
    text = yaml.safe_dump({"model": plain, **split_settings(settings)}, sort_keys=False)
    comment = "".join(f"# {line}\n" for line in header.splitlines())
    return comment + text


def save_run_config(model: ModelCfg, settings: Mapping[str, Any], path: str | Path, header: str = "") -> Path:
    """Write ``model`` with its run settings to ``path`` whole (see ``run_config_text``).

    ``load_model_config`` reads the model back from it; ``load_run_config`` reads both, and
    ``affinity train PATH`` re-trains the model as the settings say.
    """
    return atomic_write_text(path, run_config_text(model, settings, header))


def load_run_config(path: str | Path, *, need_model: bool = True) -> RunConfig:
    """Read a run config (or a bare model config, which has no run settings).

    Args:
        path: the YAML file.
        need_model: a file without a model is an error (False for ``--config`` files, where
            a ``model`` section is ignored).

    Raises:
        ConfigError: the file is missing, not YAML, an unknown key (with the closest names),
            or a value its rule refuses; the message starts with the file and key path.
    """
    from affinity._documents import load_yaml
    from affinity.models.config import ModelCfg

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such file (a YAML file of run settings)")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not readable ({exc})") from None
    doc = load_yaml(text, str(path), ConfigError)
    if not isinstance(doc, Mapping) or (need_model and not doc):
        raise ConfigError(f"{path}: {doc!r} is not allowed; allowed: a mapping with a model section")
    if "model" not in doc and need_model:
        return RunConfig(ModelCfg.from_dict(doc, "model"))  # a bare model config
    allowed = ["model", *TOP_KEYS, "budget"]
    settings: dict[str, Any] = {}
    try:
        for key, value in doc.items():
            if key in ("model", "budget"):
                continue
            settings[key] = check_value(key, value, keys=allowed)
        budget = doc.get("budget", {})
        if not isinstance(budget, Mapping):
            raise ConfigError(f"budget: {budget!r} is not allowed; allowed: a mapping of training settings")
        for key, value in budget.items():
            settings[key] = check_value(key, value, "budget", keys=BUDGET_KEYS)
        model = ModelCfg.from_dict(doc["model"], "model") if need_model else None
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return RunConfig(model, settings)
