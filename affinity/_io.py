"""Writing result files whole: a reader (a colleague, a second worker, ``tail``) sees the old
file or the new one, never half of one.

Every file affinity writes (leaderboards, configs, metrics, checkpoints, PNGs, reports) goes
through ``atomic_write``: the bytes go to a temporary file in the same folder, are flushed
to disk, and the temporary file is renamed over the target. The file gets the permissions an
ordinary ``open(path, "w")`` would give (``0o666`` less the umask), not ``mkstemp``'s 0600,
so results are readable by whoever may read the folder.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

__all__ = ["atomic_write", "atomic_write_bytes", "atomic_write_text", "check_writable", "default_file_mode"]


def default_file_mode() -> int:
    """The mode ``open(path, "w")`` creates a file with: 0o666 less the process umask."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write(path: str | Path, write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp)`` to fill a temporary file beside ``path``, then rename it to ``path``.

    The parent folder is created. On any exception (Ctrl-C included) the temporary file is
    removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, default_file_mode())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` whole (see ``atomic_write``)."""
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8, newlines as given) to ``path`` whole (see ``atomic_write``)."""

    def write(tmp: Path) -> None:
        with open(tmp, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)

    return atomic_write(path, write)


def check_writable(folder: str | Path) -> Path:
    """Write and remove a probe file in ``folder``, so that a command finds an output location
    it cannot write before it works rather than after. Folders created for the probe are
    removed again: a command refused later (bad input) leaves nothing behind.

    Raises:
        ConfigError: the folder cannot be created or written (a read-only file system, a file
            in the way, no permission), naming the folder and the reason.
    """
    from affinity.errors import ConfigError

    folder = Path(folder)
    created = [p for p in (folder, *folder.parents) if not p.exists()]
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=folder, prefix=".write-check.")
        os.close(fd)
        os.unlink(name)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ConfigError(f"{folder}: not writable ({reason}); allowed: a folder you can write") from None
    finally:
        for path in created:  # deepest first; a folder something else filled meanwhile stays
            try:
                path.rmdir()
            except OSError:
                break
    return folder
