"""`--dataset cifar10` without a path: download from a local HTTP server on 127.0.0.1 serving
small archives the tests build, checksum, safe extraction, and each failure as one line."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import socket
import tarfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from affinity.cli import main
from affinity.data import download, load_dataset
from affinity.errors import DataError
from tests.data.test_formats import write_cifar10

NAME = "cifar-10-python.tar.gz"


def _tar_gz(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A CIFAR-10 archive as the official one is laid out, with 6 images per batch."""
    root = write_cifar10(tmp_path_factory.mktemp("src") / "cifar-10-batches-py")
    return _tar_gz({f"cifar-10-batches-py/{p.name}": p.read_bytes() for p in sorted(root.iterdir())})


class _Server:
    """Serves ``routes[path] = (body, declared length)``; counts requests."""

    def __init__(self) -> None:
        self.routes: dict[str, tuple[bytes, int]] = {}
        self.requests = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests += 1
                if self.path not in server.routes:
                    self.send_error(404)
                    return
                body, length = server.routes[self.path]
                self.send_response(200)
                self.send_header("Content-Length", str(length))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def serve(self, folder: str, body: bytes, length: int | None = None) -> str:
        self.routes[f"/{folder}/{NAME}"] = (body, len(body) if length is None else length)
        return f"{self.url}/{folder}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server() -> Iterator[_Server]:
    s = _Server()
    yield s
    s.close()


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("AFFINITY_DATA", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _publish(monkeypatch: pytest.MonkeyPatch, body: bytes) -> None:
    """Make ``body``'s MD5 the published one (the real archive is 170 MB)."""
    md5 = hashlib.md5(body, usedforsecurity=False).hexdigest()
    published = dataclasses.replace(download.ARCHIVES["cifar10"], md5=md5)
    monkeypatch.setitem(download.ARCHIVES, "cifar10", published)


def test_published_checksums_are_the_official_ones() -> None:
    assert download.ARCHIVES["cifar10"].md5 == "c58f30108f718f92721af3b95e74349a"
    assert download.ARCHIVES["cifar100"].md5 == "eb9058c3a382ffc7106e4002c42a8d85"
    assert download.ARCHIVES["cifar10"].url == "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"


@pytest.mark.parametrize("quiet", [False, True])
def test_download_check_extract_then_cached(
    server: _Server,
    cache: Path,
    archive: bytes,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
    quiet: bool,
) -> None:
    monkeypatch.setenv("AFFINITY_DATA_MIRROR", server.serve("ok", archive))
    _publish(monkeypatch, archive)
    data = load_dataset("cifar10", quiet=quiet)
    assert len(data.train) == 5 * 6 and len(data.val) == 6 and data.num_classes == 10
    assert data.class_names == [f"c{i}" for i in range(10)]
    assert sorted(p.name for p in cache.iterdir()) == ["cifar-10-batches-py"]  # no archive, no temp left
    err = capsys.readouterr().err  # piped: timestamped lines, the last one the whole size
    if quiet:
        assert err == ""
    else:
        assert f"{NAME}: {len(archive) / 1e6:.1f} MB of {len(archive) / 1e6:.1f} MB" in err.splitlines()[-1]
    load_dataset("cifar10")
    assert server.requests == 1  # the second load reads the cache


def test_bad_checksum_keeps_nothing(
    server: _Server, cache: Path, archive: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AFFINITY_DATA_MIRROR", server.serve("tampered", archive))
    with pytest.raises(DataError, match=r"checksum mismatch .* published c58f30108f718f92721af3b95e74349a"):
        load_dataset("cifar10", quiet=True)
    assert list(cache.iterdir()) == []


def test_connection_cut_short(
    server: _Server, cache: Path, archive: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AFFINITY_DATA_MIRROR", server.serve("cut", archive[:1000], length=len(archive)))
    _publish(monkeypatch, archive)
    with pytest.raises(DataError, match="broke off"):
        load_dataset("cifar10", quiet=True)
    assert list(cache.iterdir()) == []


def test_truncated_archive(
    server: _Server, cache: Path, archive: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A checksum that matches a truncated file (a bad mirror): extraction fails in one line."""
    monkeypatch.setenv("AFFINITY_DATA_MIRROR", server.serve("short", archive[: len(archive) // 2]))
    _publish(monkeypatch, archive[: len(archive) // 2])
    with pytest.raises(DataError, match="truncated or not a gzip tar archive"):
        load_dataset("cifar10", quiet=True)
    assert list(cache.iterdir()) == []


@pytest.mark.parametrize("member", ["../escape", "/etc/passwd-copy", "cifar-10-batches-py/../../escape"])
def test_members_outside_the_folder_are_refused(
    server: _Server, cache: Path, monkeypatch: pytest.MonkeyPatch, member: str
) -> None:
    body = _tar_gz({member: b"x"})
    monkeypatch.setenv("AFFINITY_DATA_MIRROR", server.serve("evil", body))
    _publish(monkeypatch, body)
    with pytest.raises(DataError, match="refusing the member"):
        load_dataset("cifar10", quiet=True)
    assert list(cache.iterdir()) == []
    assert not (cache.parent / "escape").exists()


def test_links_are_refused(server: _Server, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        link = tarfile.TarInfo("cifar-10-batches-py/test_batch")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)
    monkeypatch.setenv("AFFINITY_DATA_MIRROR", server.serve("link", buf.getvalue()))
    _publish(monkeypatch, buf.getvalue())
    with pytest.raises(DataError, match="refusing the member 'cifar-10-batches-py/test_batch'"):
        load_dataset("cifar10", quiet=True)


def test_no_network_is_one_line_exit_2(
    cache: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("AFFINITY_DATA_MIRROR", f"http://127.0.0.1:{port}")
    with pytest.raises(SystemExit) as exc:
        main(["train", "as_mlp_t", "--dataset", "cifar10", "--epochs", "1", "--quiet"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert f"http://127.0.0.1:{port}/{NAME}: cannot download" in err
