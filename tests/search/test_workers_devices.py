"""Which device each worker process trains on (the assignment runs on CPU: the GPU count is
passed in)."""

from __future__ import annotations

from pathlib import Path

import pytest

from affinity.errors import AffinityError, ConfigError
from affinity.search.devices import usable_cores, worker_count, worker_devices
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


@pytest.mark.parametrize(
    ("n_jobs", "devices", "cores", "expected"),
    [
        (3, ("cpu",), 2, 3),  # a number is kept, cores or not
        ("auto", ("cpu",), 2, 2),  # one per core
        ("auto", ("cpu",), 1, 1),
        ("auto", ("cuda:0",), 16, 4),  # at most 4 per GPU
        ("auto", ("cuda:0", "cuda:1"), 16, 8),
        ("auto", ("cuda:0", "cuda:1", "cuda:0"), 16, 8),  # a GPU listed twice is one GPU
        ("auto", ("cuda:0", "cuda:1"), 3, 3),  # and never more than the cores
    ],
)
def test_n_jobs_auto_is_one_worker_per_core(
    n_jobs: int | str, devices: tuple[str, ...], cores: int, expected: int
) -> None:
    assert worker_count(n_jobs, devices, cores=cores) == expected


@pytest.mark.parametrize(
    ("n_jobs", "devices", "trials", "expected"),
    [
        ("auto", ("cpu",), 5, 5),  # 16 cores, 5 trials: 5 workers
        ("auto", ("cpu",), 30, 16),
        ("auto", ("cuda:0",), 3, 3),
        (8, ("cpu",), 5, 8),  # a number is what the user asked for
    ],
)
def test_n_jobs_auto_starts_no_more_workers_than_trials(
    n_jobs: int | str, devices: tuple[str, ...], trials: int, expected: int
) -> None:
    assert worker_count(n_jobs, devices, trials=trials, cores=16) == expected


def test_usable_cores_are_the_affinity_mask() -> None:
    import os

    expected = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert usable_cores() == expected


@pytest.mark.parametrize(("cores", "spawned"), [(1, False), (2, True)])
def test_search_with_n_jobs_auto_starts_a_worker_per_core(
    cores: int, spawned: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One core: the trials run in the command's own process; two: in worker processes."""
    import os

    import optuna

    from affinity.cli import main
    from affinity.search import devices

    monkeypatch.setattr(devices, "usable_cores", lambda: cores)
    args = ["search", "--space", "tiny.yaml", "--n-jobs", "auto", "--n-trials", "2"]
    main([*args, "--out", str(tmp_path), "--sampler", "random", "--quiet"])
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(tmp_path / "tiny" / "journal.log"))
    )
    trials = optuna.load_study(study_name="tiny", storage=storage).get_trials()
    pids = {t.user_attrs["pid"] for t in trials}
    assert len(trials) >= 2
    assert (os.getpid() not in pids) is spawned


def test_n_jobs_takes_auto_in_the_space_file(tmp_path: Path) -> None:
    space = tmp_path / "s.yaml"
    doc = Path(load_space("tiny.yaml").source).read_text()
    doc = doc.replace("search: {", "search: {n_jobs: auto, ", 1)
    space.write_text(doc)
    assert load_space(str(space)).settings.n_jobs == "auto"
    space.write_text(doc.replace("n_jobs: auto", "n_jobs: all"))
    allowed = r"search.n_jobs: \"all\" is not allowed; allowed: an integer >= 1 or auto"
    with pytest.raises(AffinityError, match=allowed):
        load_space(str(space))
