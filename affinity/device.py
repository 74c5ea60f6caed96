"""Device names, resolved once for every command and library entry point."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from affinity.errors import ConfigError

if TYPE_CHECKING:
    import torch

__all__ = ["ALLOWED", "is_device_name", "resolve_device"]

_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")
#: what a device name may be, in error messages
ALLOWED = "auto, cpu, cuda or cuda:N"


def is_device_name(device: object) -> bool:
    """True for the names ``resolve_device`` takes (checked without importing torch)."""
    return isinstance(device, str) and _DEVICE.match(device) is not None


def resolve_device(device: str) -> torch.device:
    """``auto`` -> the first CUDA device when there is one, else the CPU.

    ``cpu``, ``cuda`` and ``cuda:N`` are taken as given once checked: asking for CUDA where
    none is available, or for an index past the last GPU, is a ``ConfigError`` naming what
    is allowed here.
    """
    import torch

    name = str(device).strip()
    if not is_device_name(name):
        raise ConfigError(f"device={device!r} is not allowed (allowed: {ALLOWED})")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ConfigError(
                f"device={name!r} is not allowed: no CUDA device is available here (allowed: auto, cpu)"
            )
        dev = torch.device(name)
        if dev.index is not None and dev.index >= count:
            raise ConfigError(f"device={name!r} is not allowed: only cuda:0..cuda:{count - 1} exist here")
        return dev
    return torch.device(name)
