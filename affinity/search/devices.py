"""Which device each worker process of a search trains on.

``--devices cuda:0,cuda:1`` lists them: worker ``i`` takes ``devices[i % len(devices)]``
(round-robin when there are more workers than devices). Without it, ``--device auto`` on a
machine with N GPUs spreads the workers over all N (so ``--n-jobs N`` uses every GPU), and
CPU-only machines are unaffected. Names are checked by ``affinity.device``.

``--n-jobs auto`` (Optuna's ``n_jobs=-1``) starts one worker per CPU core this process may
use when the workers train on the CPU, and on GPUs as many, at most ``PER_GPU`` per GPU:
the search's small models leave a GPU idle between kernel launches (on one H200, 4 workers
ran 71 shifts.yaml trials in 60 s, one worker 20); never more than the study's ``n_trials``
(a worker with no trial to run would only start and stop).
"""

from __future__ import annotations

from affinity.device import ALLOWED, is_device_name
from affinity.errors import ConfigError

__all__ = ["AUTO", "PER_GPU", "usable_cores", "worker_count", "worker_devices"]

#: the ``--n-jobs`` / ``search.n_jobs`` value that sizes the workers to the machine
AUTO = "auto"
#: ``auto``'s most workers per GPU
PER_GPU = 4


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity mask, as ``taskset`` and
    container CPU sets limit it; the machine's count where the platform has no mask)."""
    import os

    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def worker_count(
    n_jobs: int | str, devices: tuple[str, ...], *, trials: int | None = None, cores: int | None = None
) -> int:
    """The worker processes ``n_jobs`` asks for: itself, or for ``auto`` one per usable CPU
    core (``cores``; None: ``usable_cores()``), at most ``PER_GPU`` per distinct GPU in
    ``devices`` when the workers train on GPUs, and at most ``trials`` (the study's
    ``n_trials``; None: no cap)."""
    if n_jobs != AUTO:
        return int(n_jobs)
    cores = usable_cores() if cores is None else cores
    gpus = {d for d in devices if d.startswith("cuda")}
    count = min(cores, PER_GPU * len(gpus)) if gpus else cores
    return max(1, count if trials is None else min(count, trials))


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
