"""`affinity show`: the compare figure, a model's layer, and bad input."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from affinity.cli import cli, main

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_compare_writes_one_png_and_names_the_sizes() -> None:
    result = CliRunner().invoke(
        cli,
        ["show", "--compare", "dwconv,axial_shift,spatial_shift,attention,token_mlp", "--file", "cmp.png"],
    )
    assert result.exit_code == 0, result.output
    assert Path("cmp.png").read_bytes().startswith(PNG_MAGIC)
    out = result.output
    assert "3×3: 9 tokens" in out
    assert "s=5: 9 tokens" in out
    assert "shift: 4 tokens" in out
    assert "7×7: 49 tokens" in out
    assert "token MLP: 196 tokens" in out


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["show", "--compare", "axial_shift", "--query", "99,0"], "--query"),
        (["show", "--compare", "axial_shfit"], "axial_shift"),
        (["show", "--compare", "axial_shift:shift_size=4"], "shift_size"),
        # issue 16.4: was a TypeError traceback; the affinity's declaration names the allowed
        (
            ["show", "--compare", "dwconv,axial_shift:dilaton=2"],
            "dilaton=2 is not a parameter of affinity 'axial_shift': "
            "allowed shift_size, dilation, padding, axis",
        ),
        (["show"], "MODEL"),
    ],
)
def test_bad_input_is_one_line_exit_2(
    args: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0], err
    assert not list(Path().glob("*.png"))


def test_out_is_the_results_root(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--out means what it means for search and report: pictures go to OUT/show/."""
    result = CliRunner().invoke(cli, ["show", "--compare", "axial_shift", "--out", str(tmp_path / "res")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "res" / "show" / "compare.png").read_bytes().startswith(PNG_MAGIC)
    with pytest.raises(SystemExit) as exc:
        main(["show", "--compare", "axial_shift", "--out", "old.png"])
    assert exc.value.code == 2
    assert "use --file" in capsys.readouterr().err
    assert not Path("old.png").exists()
