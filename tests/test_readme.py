"""README.md's examples: every Python block runs, every `affinity ...` command line parses
(its command and options exist and take the values written)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest

from affinity.cli import cli

README = Path(__file__).resolve().parents[1] / "README.md"


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)


def _command_lines() -> list[str]:
    lines = []
    for block in _blocks("bash"):
        for line in block.splitlines():
            for part in line.split("&&"):  # `pip install ... && affinity search ...`
                part = part.strip()
                if part.startswith("affinity "):
                    lines.append(part)
    return lines


def test_readme_has_examples() -> None:
    assert len(_blocks("python")) >= 1
    assert len(_command_lines()) >= 25


@pytest.mark.parametrize("line", _command_lines())
def test_readme_command_parses(line: str) -> None:
    argv = shlex.split(line, comments=True)[1:]
    ctx = cli.make_context("affinity", ["--help"] if not argv else ["--version"], resilient_parsing=True)
    command = cli.get_command(ctx, argv[0])
    assert command is not None, f"unknown command in README: {line}"
    try:
        command.make_context(argv[0], argv[1:], parent=ctx)
    except click.UsageError as exc:  # BadParameter, NoSuchOption, MissingParameter
        pytest.fail(f"README line does not parse: {line}: {exc.format_message()}")


def test_readme_python_runs() -> None:
    for block in _blocks("python"):
        exec(compile(block, str(README), "exec"), {})
