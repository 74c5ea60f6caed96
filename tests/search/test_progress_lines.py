"""Piped output (a batch job, CI, ``tee``) gets one timestamped line per finished trial;
``--quiet`` gets none (issue 17: piped searches printed nothing until they finished)."""

from __future__ import annotations

import re

from click.testing import CliRunner

from affinity.cli import cli

LINE = re.compile(r"^\d\d:\d\d:\d\d tiny: (\d+)/3 trials done · best acc [0-9.]+ · front \d+ · elapsed ")


def _search(tmp_path, *extra: str):
    result = CliRunner().invoke(
        cli,
        [
            "search",
            "--space",
            "tiny.yaml",
            "--n-trials",
            "3",
            "--max-steps",
            "2",
            "--out",
            str(tmp_path),
            *extra,
        ],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    return result.stderr.splitlines()


def test_piped_search_prints_one_line_per_trial(tmp_path):
    lines = [line for line in _search(tmp_path) if LINE.match(line)]
    assert [int(LINE.match(line).group(1)) for line in lines] == [1, 2, 3]


def test_quiet_search_prints_no_progress(tmp_path):
    assert not [line for line in _search(tmp_path, "--quiet") if LINE.match(line)]
