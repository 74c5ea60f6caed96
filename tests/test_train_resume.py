"""`affinity train`: Ctrl-C saves a resumable checkpoint, --resume ends where an uninterrupted
run ends (bit for bit on the CPU), and output locations are checked before training."""

from __future__ import annotations

import errno
import json
import signal
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from affinity.cli import cli
from affinity.train import load_checkpoint

TINY = {"dims": (8, 8, 8, 8), "depths": (1, 1, 1, 1), "patch_sizes": (2, 2, 2, 2), "drop_path_rate": 0.2}
#: 102 train images at batch 16: 6 steps per epoch, 18 in all
ARGS = ["--dataset", "synthetic:classes=4,n=128", "--img-size", "16", "--epochs", "3", "--batch-size", "16"]
ARGS += ["--seed", "5", "--device", "cpu", "--quiet"]


@pytest.fixture(scope="module")
def tiny_yaml(tmp_path_factory) -> Path:
    from affinity.models import resolve_model_config
    from affinity.models.config import apply_overrides, save_model_config

    path = tmp_path_factory.mktemp("cfg") / "tiny.yaml"
    return save_model_config(apply_overrides(resolve_model_config("as_mlp_t"), **TINY), path)


def _ctrl_c_at(monkeypatch, step: int) -> None:
    """Send SIGINT to this process right after optimiser step ``step``, as a user would."""
    import affinity.train.loop as loop

    original = loop.train

    def train(*args, **kwargs):
        def on_step(n: int) -> None:
            if n == step:
                signal.raise_signal(signal.SIGINT)

        return original(*args, on_step=on_step, **kwargs)

    monkeypatch.setattr(loop, "train", train)


def _strip_times(record: dict) -> dict:
    m = dict(record["metrics"])
    m.pop("wall_s")
    m.pop("eval_s")
    m["history"] = [{k: v for k, v in h.items() if k != "wall_s"} for h in m["history"]]
    return m


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path).state_dict


@pytest.fixture(scope="module")
def whole_run(tmp_path_factory, tiny_yaml: Path) -> Path:
    """The uninterrupted run's output folder."""
    out = tmp_path_factory.mktemp("whole")
    result = CliRunner().invoke(cli, ["train", str(tiny_yaml), *ARGS, "--run-dir", str(out)])
    assert result.exit_code == 0, result.output
    return out


@pytest.mark.parametrize("stop_at", [4, 6, 13])  # mid epoch 1, end of epoch 1, mid epoch 3
def test_ctrl_c_then_resume_equals_an_uninterrupted_run(
    tmp_path: Path, tiny_yaml: Path, whole_run: Path, monkeypatch, stop_at
) -> None:
    runner = CliRunner()

    with monkeypatch.context() as m:
        _ctrl_c_at(m, stop_at)
        cut = runner.invoke(cli, ["train", str(tiny_yaml), *ARGS, "--run-dir", str(tmp_path / "b")])
    assert cut.exit_code == 130, cut.output
    assert "interrupted; wrote" in cut.output and "--resume" in cut.output
    record = json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert record["metrics"]["interrupted"] is True and record["metrics"]["steps"] == stop_at
    assert record["metrics"]["epochs_run"] == stop_at // 6
    state = load_checkpoint(tmp_path / "b" / "checkpoint.pt").train_state
    assert state is not None and (state.epoch, state.batch) == (stop_at // 6 + 1, stop_at % 6)

    again = runner.invoke(cli, ["train", str(tiny_yaml), *ARGS, "--run-dir", str(tmp_path / "b"), "--resume"])
    assert again.exit_code == 0, again.output
    a = json.loads((whole_run / "metrics.json").read_text())
    b = json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert b["metrics"]["interrupted"] is False and _strip_times(a) == _strip_times(b)
    wa, wb = _weights(whole_run / "checkpoint.pt"), _weights(tmp_path / "b" / "checkpoint.pt")
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    assert load_checkpoint(tmp_path / "b" / "checkpoint.pt").train_state is None


def _main(argv: list[str], capsys) -> tuple[int, str]:
    """Exit code and stderr of ``affinity ARGV`` run in process as the console script runs it."""
    from affinity.cli import main

    with pytest.raises(SystemExit) as exc:
        raise SystemExit(main(argv))  # the console script exits with what main returns
    return int(exc.value.code or 0), capsys.readouterr().err


def test_resume_refuses_other_settings_and_says_when_there_is_nothing(
    tmp_path: Path, tiny_yaml, monkeypatch, capsys
) -> None:
    argv = ["train", str(tiny_yaml), *ARGS, "--run-dir", str(tmp_path / "o")]
    code, err = _main([*argv, "--resume"], capsys)
    assert code == 2 and err.count("\n") == 1 and "--resume: no checkpoint at" in err
    with monkeypatch.context() as m:
        _ctrl_c_at(m, 2)
        assert _main(argv, capsys)[0] == 130
    code, err = _main([*argv, "--resume", "--lr", "0.01"], capsys)
    assert code == 2 and err.count("\n") == 1 and "(lr 0.003 -> 0.01)" in err
    # device and threads say where it runs, not what it computes: they may change
    assert _main([*argv, "--resume", "--device", "auto"], capsys)[0] == 0
    code, err = _main([*argv, "--resume"], capsys)
    assert code == 0 and "holds a finished run" in err


def test_unwritable_out_fails_before_training(tmp_path: Path, tiny_yaml, monkeypatch, capsys) -> None:
    import affinity.train.loop as loop
    from affinity.cli import main

    def no_training(*args, **kwargs):
        raise AssertionError("trained although the output cannot be written")

    monkeypatch.setattr(loop, "train", no_training)
    (tmp_path / "file").write_text("a file, not a folder")
    with pytest.raises(SystemExit) as exc:
        main(["train", str(tiny_yaml), *ARGS, "--run-dir", str(tmp_path / "file" / "out")])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert f"{tmp_path / 'file' / 'out'}: not writable (Not a directory)" in err


def test_write_failing_after_training_still_prints_the_result(
    tmp_path: Path, tiny_yaml, monkeypatch, capsys
) -> None:
    import affinity._io
    import affinity.train.checkpoint
    from affinity.cli import main

    def read_only(path, write):
        raise OSError(errno.EROFS, "Read-only file system", str(path))

    monkeypatch.setattr(affinity._io, "atomic_write", read_only)
    monkeypatch.setattr(affinity.train.checkpoint, "atomic_write", read_only)
    with pytest.raises(SystemExit) as exc:
        main(["train", str(tiny_yaml), *ARGS, "--run-dir", str(tmp_path / "o")])
    captured = capsys.readouterr()
    assert exc.value.code == 2
    assert (
        captured.err.count("\n") == 1
        and "could not write the results (Read-only file system)" in captured.err
    )
    line, text = captured.out.split("\n", 1)
    record = json.loads(text)
    assert f"val accuracy {record['metrics']['val_acc']:.2%}" in line and record["metrics"]["steps"] == 18
    out = tmp_path / "o"  # the write check leaves no folder it made; nothing half-written
    assert not out.exists() or sorted(p.name for p in out.iterdir()) == []


def test_one_thread_by_default_and_a_line_per_epoch_when_piped(
    tmp_path: Path, tiny_yaml, monkeypatch
) -> None:
    import affinity.train.loop as loop

    original, threads = loop.train, []

    def train(*args, **kwargs):
        return original(*args, on_step=lambda n: threads.append(torch.get_num_threads()), **kwargs)

    monkeypatch.setattr(loop, "train", train)
    argv = ["train", str(tiny_yaml), *[a for a in ARGS if a != "--quiet"], "--run-dir", str(tmp_path / "o")]
    before = torch.get_num_threads()
    torch.set_num_threads(2)  # what torch picks on this 2-core machine, so the test can fail
    try:
        result = CliRunner().invoke(cli, argv)  # CliRunner's stderr is not a terminal
    finally:
        torch.set_num_threads(before)
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stderr.splitlines() if " train epoch " in line]
    assert [line.split(" ")[3] for line in lines] == ["1/3:", "2/3:", "3/3:"]
    assert set(threads) == {1} and len(threads) == 18
    record = json.loads((tmp_path / "o" / "metrics.json").read_text())
    assert record["train_config"]["threads"] == 1
    quiet = CliRunner().invoke(cli, [*argv, "--quiet"])
    assert quiet.exit_code == 0 and quiet.stderr == ""
