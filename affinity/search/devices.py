"""Which device each worker process of a search trains on.

``--devices cuda:0,cuda:1`` lists them: worker ``i`` takes ``devices[i % len(devices)]``
(round-robin when there are more workers than devices). Without it, ``--device auto`` on a
machine with N GPUs spreads the workers over all N (so ``--n-jobs N`` uses every GPU), and
CPU-only machines are unaffected. Names are checked by ``affinity.device``.
"""

from __future__ import annotations

from affinity.device import ALLOWED, is_device_name
from affinity.errors import ConfigError

__all__ = ["worker_devices"]


def worker_devices(device: str, devices: str | None, *, gpus: int | None = None) -> tuple[str, ...]:
    """The devices of the search's workers, worker ``i`` on ``result[i % len(result)]``.

    Args:
        device: the ``--device`` value (``auto``, ``cpu``, ``cuda``, ``cuda:N``).
        devices: the ``--devices`` value, comma-separated names, or None.
        gpus: the number of CUDA devices here; None asks torch (tests pass a number to run
            the assignment on a CPU-only machine).

    Raises:
        ConfigError: a name that is not a device, or a GPU this machine does not have.
    """
    if gpus is None:
        import torch

        gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if devices is not None:
        names = tuple(name.strip() for name in devices.split(","))
        for name in names:
            _check(name, gpus, "--devices")
        return names
    if device == "auto":
        return tuple(f"cuda:{i}" for i in range(gpus)) if gpus else ("cpu",)
    _check(device, gpus, "--device")
    return (device,)


def _check(name: str, gpus: int, option: str) -> None:
    if not is_device_name(name) or name == "auto":
        raise ConfigError(f"{option}: {name!r} is not allowed; allowed: {ALLOWED.replace('auto, ', '')}")
    if name.startswith("cuda"):
        if gpus == 0:
            raise ConfigError(f"{option}: {name!r} is not allowed: no CUDA device is available here")
        index = int(name.split(":")[1]) if ":" in name else 0
        if index >= gpus:
            raise ConfigError(f"{option}: {name!r} is not allowed: only cuda:0..cuda:{gpus - 1} exist here")
