"""``affinity affinities``: every registered affinity listed, as a table and as JSON."""

from __future__ import annotations

import json

from click.testing import CliRunner

from affinity.cli import cli
from affinity.ops import AFFINITIES
from tests._cli import refusal


def test_json_lists_every_affinity_with_its_parameters() -> None:
    result = CliRunner().invoke(cli, ["affinities", "--format", "json"])
    assert result.exit_code == 0, result.output
    rows = {r["name"]: r for r in json.loads(result.output)}
    assert sorted(rows) == AFFINITIES.names()
    assert rows["attention"]["kind"] == "dynamic"
    assert rows["axial_shift"]["kind"] == "static"
    assert "shift_size=5" in rows["axial_shift"]["params"]
    assert "window_size=None" in rows["attention"]["params"]
    assert not any(p.startswith(("dim=", "hw=")) for r in rows.values() for p in r["params"])
    assert "AS-MLP" in rows["axial_shift"]["paper"]


def test_table_and_pattern() -> None:
    result = CliRunner().invoke(cli, ["affinities", "*shift"])
    assert result.exit_code == 0, result.output
    assert "axial_shift" in result.output and "spatial_shift" in result.output
    assert "attention" not in result.output


def test_pattern_is_a_substring_or_a_shell_pattern_as_for_models() -> None:
    rows = json.loads(CliRunner().invoke(cli, ["affinities", "shift", "--format", "json"]).output)
    assert [r["name"] for r in rows] == [n for n in AFFINITIES.names() if "shift" in n]
    assert len(rows) >= 2


def test_no_match_is_one_line_naming_the_closest_and_exit_2() -> None:
    """As `affinity models nope`: not an empty table with exit 0."""
    assert refusal(["affinities", "axial_shft"]) == (
        "no registered affinity matches 'axial_shft'; closest: axial_shift, spatial_shift, cycle_shift "
        f"(`affinity affinities` lists all {len(AFFINITIES)})"
    )
    assert refusal(["models", "as_mpl_t"]).startswith("no registered model matches 'as_mpl_t'; closest: ")
