"""Where a study lives: opening a storage, keeping its password out of every message, the lock
the workers ask under, and database errors turned into one line.

- The default is an Optuna journal file, ``<out>/<study>/journal.log``: several processes on
  one machine (SQLite locks under concurrent writers). Dead workers' trials are found by host
  name and PID.
- ``--storage URL`` (or ``$AFFINITY_STORAGE``) takes any Optuna storage URL; for many
  machines, PostgreSQL (``postgresql://user@host/db``; the password from libpq's
  ``PGPASSWORD`` or ``~/.pgpass`` keeps it off the command line). An RDB storage is opened
  with Optuna's heartbeat: a trial whose worker stops beating for ``2 × heartbeat`` seconds
  is failed as ``interrupted`` by any other worker and its configuration queued again.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from affinity.errors import StudyError

__all__ = [
    "DEFAULT_HEARTBEAT",
    "ask_lock",
    "connection_errors",
    "default_storage_path",
    "is_url",
    "mask_url",
    "open_storage",
    "retrying",
    "storage_errors",
]

#: seconds between a running trial's heartbeats on an RDB storage (``--heartbeat``)
DEFAULT_HEARTBEAT = 30


def default_storage_path(out: str | Path, study: str) -> Path:
    return Path(out) / study / "journal.log"


def is_url(storage: str | None) -> bool:
    return storage is not None and "://" in storage


def mask_url(storage: str | None) -> str:
    """``storage`` as it may be shown: a URL's password replaced by ``***``."""
    if not is_url(storage):
        return str(storage)
    from sqlalchemy.engine import make_url

    try:
        return make_url(str(storage)).render_as_string(hide_password=True)
    except Exception:  # not parseable as a URL: show only its scheme
        return str(storage).split("://", 1)[0] + "://***"


def _scrub(message: str, storage: str) -> str:
    """``message`` (a driver's error text) with the URL's password, if any, masked."""
    from sqlalchemy.engine import make_url

    with contextlib.suppress(Exception):
        password = make_url(storage).password
        if password:
            message = message.replace(str(password), "***")
    return message.replace(storage, mask_url(storage))


def _problem(exc: BaseException, storage: str) -> str:
    """The first informative line of a database error, password masked."""
    text = str(exc.__cause__ or exc) if type(exc).__name__ == "StorageInternalError" else str(exc)
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("[SQL")]
    return _scrub(lines[0] if lines else type(exc).__name__, storage)


def open_storage(url: str | None, path: Path, *, create: bool, heartbeat: int | None = None) -> Any:
    """An Optuna storage: the journal file at ``path`` when ``url`` is None, else ``url``.

    Args:
        url: any Optuna storage URL, or a ``.log`` journal path; None for the default.
        path: the default journal file.
        create: create the journal file (and its folder) when missing; else a missing file is
            a ``StudyError``.
        heartbeat: for an RDB storage, the workers' heartbeat interval in seconds (None: no
            heartbeat, as readers such as ``affinity leaderboard`` need none).
    """
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    if not is_url(url):
        file = path if url is None else Path(str(url))
        if not file.is_file():
            if not create:
                raise StudyError(
                    f"no study storage at {file} (run `affinity search` first, or pass --storage URL)"
                )
            file.parent.mkdir(parents=True, exist_ok=True)
        lock: Any = JournalFlock(file)  # Optuna's lock protocol: acquire() and release()
        return JournalStorage(JournalFileBackend(str(file), lock_obj=lock))
    url = str(url)
    if url.startswith("sqlite:///") and not create:
        db = Path(url.removeprefix("sqlite:///"))
        if not db.is_file():
            raise StudyError(f"--storage {url}: the database file {db} does not exist")
    beat: dict[str, Any] = {}
    if heartbeat is not None:
        beat = {"heartbeat_interval": heartbeat, "grace_period": 2 * heartbeat}
    import sqlalchemy.exc

    for attempt in range(3):
        try:
            with _quiet_experimental():
                # pre-ping: a connection the server dropped (a restart) is replaced, not used
                return optuna.storages.RDBStorage(url, engine_kwargs={"pool_pre_ping": True}, **beat)
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError) as exc:
            # workers starting together on an empty database all create Optuna's tables;
            # the losers of that race find them made on the next try
            if attempt == 2:
                raise _unopenable(url, exc) from None
            time.sleep(0.5 * (attempt + 1))
        except Exception as exc:  # a bad URL, an unreachable server, a wrong password: the user's input
            raise _unopenable(url, exc) from None
    raise AssertionError("unreachable")


def _unopenable(url: str, exc: BaseException) -> StudyError:
    return StudyError(f"--storage {mask_url(url)}: cannot be opened: {_problem(exc, url)}")


@contextlib.contextmanager
def _quiet_experimental() -> Iterator[None]:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


#: database errors that mean "the connection or the server failed", not a bug
def connection_errors() -> tuple[type[BaseException], ...]:
    import optuna
    import sqlalchemy.exc

    return (
        optuna.exceptions.StorageInternalError,
        sqlalchemy.exc.OperationalError,
        sqlalchemy.exc.InterfaceError,
        sqlalchemy.exc.PendingRollbackError,  # a session whose connection failed earlier
    )


@contextlib.contextmanager
def storage_errors(storage: str | None) -> Iterator[None]:
    """Turn a lost database connection inside the block into one ``StudyError`` line."""
    if not is_url(storage):
        yield
        return
    try:
        yield
    except connection_errors() as exc:
        raise StudyError(
            f"--storage {mask_url(storage)}: lost the database: {_problem(exc, str(storage))} "
            "(run the same command again to resume)"
        ) from None


def retrying(storage: str | None, action: Any, *args: Any, reset: Any = None, seconds: float = 30.0) -> Any:
    """``action(*args)``, tried again every second while the database is unreachable (a server
    restart), for up to ``seconds``, calling ``reset()`` before each new try; then the
    one-line ``StudyError`` of ``storage_errors``."""
    if not is_url(storage):
        return action(*args)
    deadline = time.monotonic() + seconds
    while True:
        try:
            return action(*args)
        except connection_errors():
            if time.monotonic() >= deadline:
                with storage_errors(storage):
                    raise
            time.sleep(1.0)
            if reset is not None:
                reset()


_ENGINES: dict[str, Any] = {}


@contextlib.contextmanager
def ask_lock(storage: str | None, study: str, path: Path) -> Iterator[None]:
    """The lock a worker counts and asks under, so that all workers together ask for exactly
    the study's target: a PostgreSQL advisory lock (all machines) for a ``postgresql`` URL,
    else an ``flock`` on ``path`` (the processes of this machine)."""
    if not (is_url(storage) and str(storage).startswith("postgresql")):
        with file_lock(path):
            yield
        return
    import sqlalchemy

    url = str(storage)
    if url not in _ENGINES:
        _ENGINES[url] = sqlalchemy.create_engine(url, pool_pre_ping=True, pool_size=1)
    key = int.from_bytes(hashlib.sha256(f"affinity ask {study}".encode()).digest()[:8], "big", signed=True)
    with _ENGINES[url].connect() as conn:
        conn.execute(sqlalchemy.text("SELECT pg_advisory_lock(:k)"), {"k": key})
        conn.commit()
        try:
            yield
        finally:
            with contextlib.suppress(*connection_errors()):  # a lost session drops its lock anyway
                conn.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                conn.commit()


class JournalFlock:
    """The journal file's write lock as an ``flock`` on ``<journal>.flock``.

    Optuna's default (a symlink beside the file) outlives a process killed with SIGKILL in
    the middle of a write: every later writer then waited for ever (its grace period follows
    the symlink, which a relative path breaks). The kernel drops an ``flock`` with its
    process, so a killed worker never blocks the resume.
    """

    def __init__(self, journal: Path) -> None:
        self.path = journal.with_name(journal.name + ".flock")
        self._fh: Any = None

    def acquire(self) -> bool:
        import fcntl

        fh = open(self.path, "a+")  # noqa: SIM115 - held until release()
        try:
            fcntl.flock(fh, fcntl.LOCK_EX)
        except BaseException:
            fh.close()
            raise
        self._fh = fh
        return True

    def release(self) -> None:
        import fcntl

        fh, self._fh = self._fh, None
        if fh is not None:
            fcntl.flock(fh, fcntl.LOCK_UN)
            fh.close()


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock between the worker processes of this machine (``fcntl.flock``)."""
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
