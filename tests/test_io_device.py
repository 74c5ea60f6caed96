"""The one atomic write and the one device resolution every command uses."""

from __future__ import annotations

import os
import stat

import pytest
import torch

from affinity._io import atomic_write, atomic_write_bytes, atomic_write_text
from affinity.device import is_device_name, resolve_device
from affinity.errors import ConfigError


def test_atomic_write_respects_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        path = atomic_write_text(tmp_path / "a" / "board.csv", "x,y\n1,2\n")
    finally:
        os.umask(old)
    assert path.read_text() == "x,y\n1,2\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # not mkstemp's 0600


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    path = atomic_write_bytes(tmp_path / "f.bin", b"old")

    def broken(tmp):
        tmp.write_bytes(b"half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, broken)
    assert path.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.bin"]  # no temporary left


@pytest.mark.parametrize("name", ["auto", "cpu", "cuda", "cuda:0", "cuda:12"])
def test_device_names_accepted(name):
    assert is_device_name(name)


@pytest.mark.parametrize("name", ["gpu", "CUDA", "cuda:", "cuda:x", "", "tpu", None, 0])
def test_device_names_refused(name):
    assert not is_device_name(name)
    with pytest.raises(ConfigError, match="allowed: auto, cpu, cuda or cuda:N"):
        resolve_device(name)  # type: ignore[arg-type]


def test_resolve_device_auto_and_cpu():
    assert resolve_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_cuda_without_a_gpu_is_one_clear_error():
    with pytest.raises(ConfigError, match="no CUDA device is available here"):
        resolve_device("cuda:1")


def test_check_writable_leaves_no_folder_it_created(tmp_path):
    from affinity._io import check_writable

    assert check_writable(tmp_path / "a" / "b") == tmp_path / "a" / "b"
    assert list(tmp_path.iterdir()) == []  # probed, then removed: a refusal later leaves nothing
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="file/out: not writable"):
        check_writable(tmp_path / "file" / "out")
