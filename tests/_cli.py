"""Running the ``affinity`` console entry point in-process, as a user's shell would, through
click's ``CliRunner`` isolation: the exit code ``main`` gives (2 for an ``AffinityError``, with
its one line) and what it wrote to stdout and stderr."""

from __future__ import annotations

from dataclasses import dataclass

from click.testing import CliRunner

from affinity.cli import main


@dataclass(frozen=True)
class Ran:
    code: int
    stdout: str
    stderr: str


def run_main(argv: list[str]) -> Ran:
    """``affinity ARGV``; an exception other than ``SystemExit`` (a traceback) propagates."""
    with CliRunner().isolation() as (stdout, stderr, _):
        try:
            main(argv)
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        return Ran(code, stdout.getvalue().decode(), stderr.getvalue().decode("utf-8", "replace"))


def refusal(argv: list[str]) -> str:
    """The one line ``affinity ARGV`` refuses with (exit code 2, no traceback), without its
    ``affinity: error: `` prefix."""
    ran = run_main(argv)
    lines = ran.stderr.strip().splitlines()
    assert ran.code == 2 and len(lines) == 1 and lines[0].startswith("affinity: error: "), ran
    return lines[0].removeprefix("affinity: error: ")
