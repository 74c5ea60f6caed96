"""A throwaway PostgreSQL server for tests and benchmarks: ``initdb`` into a temporary folder,
``pg_ctl`` on a free local port, a password-protected superuser. No mocks: the tests that use
it run against the real server.

The binaries are looked up in ``$AFFINITY_PG_BIN``, on ``PATH``, then under
``/usr/lib/postgresql/*/bin`` (Debian/Ubuntu's ``postgresql`` package). PostgreSQL refuses to
run as root; as root the server runs as the ``postgres`` OS user (``runuser``).
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

__all__ = ["HOW_TO_GET", "PASSWORD", "USER", "PostgresServer", "find_bindir"]

USER = "affinity"
PASSWORD = "s3cret-affinity-pw"
HOW_TO_GET = (
    "PostgreSQL server binaries (initdb, pg_ctl) not found: install them "
    "(Debian/Ubuntu: apt-get install postgresql; macOS: brew install postgresql) "
    "or point AFFINITY_PG_BIN at their folder"
)


def find_bindir() -> Path | None:
    """The folder holding ``initdb`` and ``pg_ctl``, or None."""
    candidates = [os.environ.get("AFFINITY_PG_BIN", "")]
    on_path = shutil.which("initdb")
    candidates.append(str(Path(on_path).parent) if on_path else "")
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    for folder in candidates:
        if folder and (Path(folder) / "initdb").is_file() and (Path(folder) / "pg_ctl").is_file():
            return Path(folder)
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PostgresServer:
    """One server: ``start()``, ``url(db)``, ``create_database(name)``, ``restart()``, ``stop()``."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="affinity-pg-"))
        self.data = self.root / "data"
        self.port = _free_port()
        self._as_root = os.geteuid() == 0

    def _run(self, *args: str, timeout: float = 120) -> None:
        cmd = [str(self.bindir / args[0]), *args[1:]]
        if self._as_root:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if out.returncode != 0:
            problem = out.stderr.strip() or out.stdout
            raise RuntimeError(f"{' '.join(cmd)} failed ({out.returncode}): {problem}")

    def start(self) -> PostgresServer:
        pwfile = self.root / "pw"
        pwfile.write_text(PASSWORD + "\n")
        if self._as_root:
            shutil.chown(self.root, "postgres")
            shutil.chown(pwfile, "postgres")
        self._run("initdb", "-D", str(self.data), "-U", USER, f"--pwfile={pwfile}", "--auth=scram-sha-256",
                  "--no-sync", "-E", "UTF8")  # fmt: skip
        pwfile.unlink()
        conf = (
            f"port = {self.port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{self.root}'\n"
            "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\nmax_connections = 200\n"
        )
        with open(self.data / "postgresql.conf", "a") as fh:
            fh.write(conf)
        self._pg_ctl("start")
        return self

    def _pg_ctl(self, action: str) -> None:
        extra = ["-m", "fast"] if action in ("stop", "restart") else []
        log = str(self.root / "log")
        self._run("pg_ctl", "-D", str(self.data), "-l", log, "-w", "-t", "60", *extra, action)

    def restart(self) -> None:
        """Stop (fast: connections are cut) and start again on the same port."""
        self._pg_ctl("restart")

    def stop(self) -> None:
        if self.data.is_dir():
            try:
                self._pg_ctl("stop")
            finally:
                shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str = "postgres", *, password: str | None = PASSWORD) -> str:
        auth = USER if password is None else f"{USER}:{password}"
        return f"postgresql://{auth}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """A new empty database; returns its URL."""
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)
