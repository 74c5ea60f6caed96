"""Official dataset archives fetched once into a cache folder, checked, then unpacked.

``--dataset cifar10`` (no path) looks in ``$AFFINITY_DATA`` (default
``~/.cache/affinity/data``); when the batches are not there it downloads the official
archive, checks its published MD5 (the figure the CIFAR page and torchvision publish),
unpacks it member by member (regular files and folders only, every path inside the cache
folder), and removes the archive. Every step writes under a temporary name and renames it
into place, so an interrupted download leaves nothing a later run would take for data, and
two processes fetching at once both end with the same folder.

``$AFFINITY_DATA_MIRROR`` replaces the base URL (the archive's file name is appended): a
local mirror on a cluster without internet access, and the tests' server on 127.0.0.1.
Failures (no network, a bad checksum, a truncated or unreadable archive) are one
``DataError`` line saying what to do.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import os
import shutil
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from affinity._progress import log_line
from affinity.errors import DataError

__all__ = ["ARCHIVES", "Archive", "cache_root", "fetch", "quiet"]

#: seconds without a byte before a download is given up
TIMEOUT_S = 30.0
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Archive:
    """An official dataset archive.

    Args:
        url: where its publisher serves it.
        md5: the published checksum of the archive.
        folder: the folder the archive unpacks to (what the loader reads).
    """

    url: str
    md5: str
    folder: str

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[-1]


#: the CIFAR page's archives (https://www.cs.toronto.edu/~kriz/cifar.html), their MD5 as
#: published there and in torchvision.datasets.CIFAR10 / CIFAR100
ARCHIVES: dict[str, Archive] = {
    "cifar10": Archive(
        "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        "c58f30108f718f92721af3b95e74349a",
        "cifar-10-batches-py",
    ),
    "cifar100": Archive(
        "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
        "eb9058c3a382ffc7106e4002c42a8d85",
        "cifar-100-python",
    ),
}

_QUIET: contextvars.ContextVar[bool] = contextvars.ContextVar("affinity_data_quiet", default=False)


@contextlib.contextmanager
def quiet(enabled: bool = True) -> Iterator[None]:
    """No download progress inside this block (``--quiet``)."""
    token = _QUIET.set(enabled)
    try:
        yield
    finally:
        _QUIET.reset(token)


def cache_root() -> Path:
    """``$AFFINITY_DATA``, else ``~/.cache/affinity/data``."""
    return Path(os.environ.get("AFFINITY_DATA") or Path.home() / ".cache" / "affinity" / "data").expanduser()


def archive_url(archive: Archive) -> str:
    """The archive's URL, or ``$AFFINITY_DATA_MIRROR/<file name>``."""
    mirror = os.environ.get("AFFINITY_DATA_MIRROR")
    return f"{mirror.rstrip('/')}/{archive.filename}" if mirror else archive.url


def fetch(name: str, expected: Callable[[Path], bool]) -> Path:
    """The unpacked folder of archive ``name`` in the cache, downloaded first if needed.

    Args:
        name: a key of ``ARCHIVES``.
        expected: whether a folder holds what the loader needs (a half-unpacked folder
            from an older run does not count and is replaced).
    """
    archive = ARCHIVES[name]
    root = cache_root()
    folder = root / archive.folder
    if expected(folder):
        return folder
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"{root}: cannot create the data cache ({exc.strerror}); set AFFINITY_DATA") from None
    with tempfile.TemporaryDirectory(dir=root, prefix=f".{name}-") as tmp:
        path = Path(tmp) / archive.filename
        _download(archive_url(archive), path, archive.md5)
        unpacked = Path(tmp) / "unpacked"
        _extract(path, unpacked)
        if not expected(unpacked / archive.folder):
            raise DataError(f"{archive_url(archive)}: the archive has no complete {archive.folder}/ folder")
        if folder.exists() and not expected(folder):
            shutil.rmtree(folder)
        with contextlib.suppress(OSError):  # another process may have won the race: theirs is as good
            os.replace(unpacked / archive.folder, folder)
    if not expected(folder):
        raise DataError(f"{folder}: could not be filled from {archive_url(archive)}")
    return folder


def _download(url: str, path: Path, md5: str) -> None:
    """``url`` to ``path``, its MD5 checked while it streams; DataError on any failure."""
    digest = hashlib.md5(usedforsecurity=False)
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as resp, open(path, "wb") as out:
            total = resp.length
            report = _progress(url, total)
            done = 0
            try:
                while chunk := resp.read(_CHUNK):
                    out.write(chunk)
                    digest.update(chunk)
                    done += len(chunk)
                    report(done)
            finally:
                report(done, final=True)
    except urllib.error.URLError as exc:
        raise DataError(
            f"{url}: cannot download ({exc.reason}); without a network, unpack the archive "
            "yourself and use NAME:PATH, or set AFFINITY_DATA_MIRROR"
        ) from None
    except (OSError, ValueError) as exc:  # connection reset, IncompleteRead, timeout
        raise DataError(f"{url}: the download broke off ({exc}); run the command again") from None
    if total is not None and done != total:
        raise DataError(f"{url}: the download broke off at {done} of {total} bytes; run the command again")
    if digest.hexdigest() != md5:
        raise DataError(
            f"{url}: checksum mismatch (md5 {digest.hexdigest()}, published {md5}): "
            "not the official archive, or damaged on the way; nothing was kept"
        )


def _extract(archive: Path, dest: Path) -> None:
    """Unpack ``archive`` into ``dest``: regular files and folders only, all inside ``dest``."""
    dest.mkdir()
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar:
                parts = PurePosixPath(member.name).parts
                if member.name.startswith("/") or ".." in parts or not (member.isfile() or member.isdir()):
                    raise DataError(
                        f"{archive.name}: refusing the member {member.name!r} (outside the folder, or a link)"
                    )
                target = dest.joinpath(*parts)
                if member.isdir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                source = tar.extractfile(member)
                assert source is not None  # a regular file always has data
                with source, open(target, "wb") as out:
                    shutil.copyfileobj(source, out, _CHUNK)
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise DataError(
            f"{archive.name}: truncated or not a gzip tar archive ({exc}); run the command again"
        ) from None


def _progress(url: str, total: int | None) -> Callable[..., None]:
    """A progress reporter: a rich bar on a terminal, a timestamped line per 10% when piped,
    nothing when quiet."""
    if _QUIET.get():
        return lambda done, final=False: None
    name = url.rsplit("/", 1)[-1]
    if sys.stderr.isatty():
        from rich.progress import DownloadColumn, Progress, TransferSpeedColumn

        columns = (*Progress.get_default_columns(), DownloadColumn(), TransferSpeedColumn())
        bar = Progress(*columns, transient=True)
        task = bar.add_task(f"downloading {name}", total=total)
        bar.start()

        def on_tty(done: int, final: bool = False) -> None:
            bar.update(task, completed=done)
            if final:
                bar.stop()

        return on_tty
    shown = [-1]  # the last tenth printed

    def piped(done: int, final: bool = False) -> None:
        tenth = 10 if final else 0 if total is None else done * 10 // max(total, 1)
        if tenth > shown[0]:
            shown[0] = tenth
            size = f"{done / 1e6:.1f} MB" + ("" if total is None else f" of {total / 1e6:.1f} MB")
            log_line(f"{name}: {size}")

    piped(0)
    return piped
