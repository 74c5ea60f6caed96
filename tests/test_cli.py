"""The CLI group: instant help, version, and one line + exit 2 for bad input."""

from __future__ import annotations

import subprocess
import sys

import pytest
from click.testing import CliRunner

from affinity import __version__
from affinity.cli import COMMANDS, cli


def test_version() -> None:
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0
    assert __version__ in result.output


def test_help_lists_every_command() -> None:
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    for name in cli.list_commands(None):  # type: ignore[arg-type]
        assert name in result.output


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_has_help(name: str) -> None:
    assert name in cli.list_commands(None)  # type: ignore[arg-type]
    result = CliRunner().invoke(cli, [name, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output


def test_help_does_not_import_torch() -> None:
    code = (
        "import sys; from affinity.cli import main; import contextlib\n"
        "with contextlib.suppress(SystemExit): main(['--help'])\n"
        "print('TORCH' if 'torch' in sys.modules or 'optuna' in sys.modules else 'LIGHT')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().endswith("LIGHT")


def test_every_source_folder_is_a_package() -> None:
    """setup.py installs what find_packages finds: a folder without __init__.py would be
    missing after a non-editable install while every test here still passes."""
    from pathlib import Path

    import affinity

    root = Path(affinity.__file__).parent
    folders = {p.parent for p in root.rglob("*.py") if "__pycache__" not in p.parts}
    missing = sorted(str(f.relative_to(root)) for f in folders if not (f / "__init__.py").is_file())
    assert missing == []
