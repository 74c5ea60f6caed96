"""Which device each worker process trains on (the assignment runs on CPU: the GPU count is
passed in)."""

from __future__ import annotations

from pathlib import Path

import pytest

from affinity.errors import ConfigError
from affinity.search.devices import worker_devices
from affinity.search.runner import RunSpec
from affinity.search.space import load_space


def _assigned(devices: tuple[str, ...], n_jobs: int) -> list[str]:
    space = load_space("tiny.yaml")
    spec = RunSpec(space, space.settings, "s", Path("results/s"), None, 4, devices, 1)
    return [spec.device(worker) for worker in range(n_jobs)]


def test_devices_round_robin_over_the_workers() -> None:
    devs = worker_devices("auto", "cuda:0,cuda:1", gpus=2)
    assert devs == ("cuda:0", "cuda:1")
    assert _assigned(devs, 5) == ["cuda:0", "cuda:1", "cuda:0", "cuda:1", "cuda:0"]


def test_auto_with_n_gpus_and_n_jobs_uses_them_all() -> None:
    assert _assigned(worker_devices("auto", None, gpus=4), 4) == ["cuda:0", "cuda:1", "cuda:2", "cuda:3"]
    assert _assigned(worker_devices("auto", None, gpus=0), 3) == ["cpu", "cpu", "cpu"]  # CPU-only: unchanged
    assert worker_devices("cpu", None, gpus=2) == ("cpu",)
    assert worker_devices("cuda:1", None, gpus=2) == ("cuda:1",)


@pytest.mark.parametrize(
    ("device", "devices", "gpus", "message"),
    [
        ("auto", "cuda:0,cuda:2", 2, "--devices: 'cuda:2' is not allowed: only cuda:0..cuda:1 exist here"),
        ("auto", "cuda:0", 0, "--devices: 'cuda:0' is not allowed: no CUDA device is available here"),
        ("auto", "gpu0", 1, "--devices: 'gpu0' is not allowed; allowed: cpu, cuda or cuda:N"),
        ("cuda", None, 0, "--device: 'cuda' is not allowed: no CUDA device is available here"),
    ],
)
def test_impossible_devices_are_one_line(device: str, devices: str | None, gpus: int, message: str) -> None:
    with pytest.raises(ConfigError) as exc:
        worker_devices(device, devices, gpus=gpus)
    assert str(exc.value) == message


def test_devices_option_on_a_cpu_machine_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    import torch

    from affinity.cli import main

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU; the message is for CPU-only machines")
    with pytest.raises(SystemExit) as exc:
        main(["search", "--space", "tiny.yaml", "--devices", "cuda:0,cuda:1", "--quiet"])
    assert exc.value.code == 2
    assert capsys.readouterr().err.strip() == (
        "affinity: error: --devices: 'cuda:0' is not allowed: no CUDA device is available here"
    )
    assert not Path("results").exists()
