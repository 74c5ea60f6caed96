"""Tables print their data as it is: text such as AS-MLP's ``out[c,i]`` is not rich markup."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from affinity.cli import cli
from affinity.ops.catalog import describe_affinities


def test_affinities_table_keeps_brackets() -> None:
    paper = next(r.paper for r in describe_affinities("axial_shift"))
    assert "out[c,i]" in paper  # the data holds what rich used to eat
    res = CliRunner().invoke(cli, ["affinities", "axial_shift"], terminal_width=200)
    assert res.exit_code == 0, res.output
    assert "out[c,i] = v[c, i" in res.output


def test_models_table_prints() -> None:
    res = CliRunner().invoke(cli, ["models", "as_mlp*"], terminal_width=100)
    assert res.exit_code == 0, res.output
    assert "as_mlp_b" in res.output and "AS-MLP" in res.output


def test_piped_tables_are_read_at_100_columns(monkeypatch: pytest.MonkeyPatch) -> None:
    """Piped, every command's table is as wide as the search's (100 columns), not rich's 80."""
    monkeypatch.delenv("COLUMNS", raising=False)
    for args in (["affinities"], ["models"]):
        res = CliRunner().invoke(cli, args)
        assert res.exit_code == 0, res.output
        assert max(len(line) for line in res.output.splitlines()) == 100, args
