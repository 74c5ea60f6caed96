"""Reading weights from ``.pth`` / ``.pt`` / ``.bin`` (``torch.load(weights_only=True)``: no code
runs on load) and ``.safetensors`` files, whatever they wrap the state dict in.

Released checkpoints nest their weights (``{"model": ...}`` from DeiT-style training scripts,
``{"state_dict": ...}``, ``module.`` prefixes from DistributedDataParallel); affinity's own
checkpoints (``affinity train``) carry the model config and input metadata beside them, and
a ``.safetensors`` file written by affinity carries the same as JSON in its metadata.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from affinity.errors import DataError

#: file suffixes read as checkpoints (anything else is a model name or a YAML config)
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".safetensors")
#: the wrapping keys released checkpoints put their weights under, preferred first
_WRAPPERS = ("state_dict", "model", "model_ema", "module", "net")
#: the safetensors metadata key holding affinity's JSON metadata
SAFETENSORS_META_KEY = "affinity"


@dataclass
class RawCheckpoint:
    """A file's weights and whatever metadata came with them.

    Attributes:
        path: the file.
        state_dict: the tensors, in the source's own names.
        meta: affinity's metadata (``model_cfg``, ``num_classes``, ``img_size``,
            ``in_chans``, ``pretrained_cfg``) when the file carries it, else empty.
    """

    path: Path
    state_dict: dict[str, Tensor]
    meta: dict[str, Any] = field(default_factory=dict)


def is_checkpoint_path(spec: object) -> bool:
    """Whether ``spec`` names a checkpoint file by its suffix."""
    return isinstance(spec, (str, Path)) and Path(spec).suffix.lower() in CHECKPOINT_SUFFIXES


def read_checkpoint(path: str | Path) -> RawCheckpoint:
    """Read a checkpoint file (see the module docstring for what is accepted).

    Raises:
        DataError: the file is missing, unreadable, or holds no state dict.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such checkpoint file")
    if path.suffix.lower() == ".safetensors":
        return _read_safetensors(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a file that is not a checkpoint
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"{path}: not a readable checkpoint ({reason[:200]})") from None
    from affinity.train import CHECKPOINT_FORMAT

    if isinstance(payload, Mapping) and payload.get("format") == CHECKPOINT_FORMAT:
        meta = {k: v for k, v in payload.items() if k != "state_dict"}
        return RawCheckpoint(path, _tensors(payload.get("state_dict"), path), meta)
    return RawCheckpoint(path, _tensors(_unwrap(payload), path))


def _unwrap(payload: Any) -> Any:
    if isinstance(payload, Mapping) and not _all_tensors(payload):
        for key in _WRAPPERS:
            inner = payload.get(key)
            if isinstance(inner, Mapping) and inner and _all_tensors(inner):
                return inner
    return payload


def _all_tensors(d: Mapping[Any, Any]) -> bool:
    return all(isinstance(k, str) and isinstance(v, Tensor) for k, v in d.items())


def _tensors(state: Any, path: Path) -> dict[str, Tensor]:
    if not isinstance(state, Mapping) or not state or not _all_tensors(state):
        kind = type(state).__name__
        some = f" with keys {sorted(map(str, state))[:6]}" if isinstance(state, Mapping) else ""
        raise DataError(f"{path}: holds no state dict (a {kind}{some}); expected name -> tensor")
    if all(k.startswith("module.") for k in state):  # saved from DistributedDataParallel
        return {k[len("module.") :]: v for k, v in state.items()}
    return dict(state)


def _read_safetensors(path: Path) -> RawCheckpoint:
    try:
        from safetensors import safe_open
    except ImportError:
        raise DataError(
            f"{path}: reading .safetensors needs the safetensors package (pip install 'affinity[weights]')"
        ) from None
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            state = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open is not a dict)
            header = f.metadata() or {}
    except Exception as exc:
        raise DataError(f"{path}: not a readable safetensors file ({str(exc)[:200]})") from None
    meta: dict[str, Any] = {}
    if SAFETENSORS_META_KEY in header:
        try:
            meta = json.loads(header[SAFETENSORS_META_KEY])
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}: metadata key {SAFETENSORS_META_KEY!r} is not JSON ({exc})") from None
    return RawCheckpoint(path, _tensors(state, path), meta)


def write_safetensors(path: str | Path, state_dict: Mapping[str, Tensor], meta: Mapping[str, Any]) -> Path:
    """Write ``state_dict`` with ``meta`` (plain data, stored as JSON) as a ``.safetensors`` file,
    atomically."""
    from safetensors.torch import save_file

    from affinity._io import atomic_write

    tensors = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
    header = {SAFETENSORS_META_KEY: json.dumps(meta, default=list)}
    return atomic_write(Path(path), lambda tmp: save_file(tensors, str(tmp), metadata=header))
