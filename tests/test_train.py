"""The trainer: determinism, budgets, schedule, the epoch callback, checkpoints, and `affinity train`."""

from __future__ import annotations

import itertools
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from affinity.data import load_dataset
from affinity.errors import ConfigError, DataError
from affinity.train import (
    TrainConfig,
    TrainMetrics,
    check_fits,
    evaluate,
    load_checkpoint,
    lr_at,
    save_checkpoint,
    train,
)


@pytest.fixture(scope="module")
def digits16():
    return load_dataset("digits", img_size=16)


def small_net(in_chans: int = 1, num_classes: int = 10) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(in_chans, 16, 4, 4),
        nn.GELU(),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.BatchNorm2d(32),
        nn.GELU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Dropout(0.1),
        nn.Linear(32, num_classes),
    )


def _without_time(m: TrainMetrics) -> dict:
    d = m.to_dict()
    d.pop("wall_s")
    d.pop("eval_s")
    for h in d["history"]:
        h.pop("wall_s")
    return d


def test_same_seed_same_metrics_on_cpu(digits16) -> None:
    cfg = TrainConfig(epochs=2, batch_size=64, seed=3, device="cpu", threads=1)
    a = train(small_net(), digits16, cfg)
    b = train(small_net(), digits16, cfg)
    c = train(small_net(), digits16, TrainConfig(epochs=2, batch_size=64, seed=4, device="cpu", threads=1))
    assert _without_time(a) == _without_time(b)
    assert _without_time(a) != _without_time(c)  # the seed drives batch order and augmentation
    assert a.epochs_run == 2 and a.steps == 2 * (len(digits16.train) // 64)
    assert 0.0 <= a.val_acc <= 1.0 and a.best_val_acc == max(h.val_acc for h in a.history)


def test_training_learns_and_evaluate_agrees(digits16) -> None:
    net = small_net()
    before, _ = evaluate(net, digits16.val)
    m = train(net, digits16, TrainConfig(epochs=4, batch_size=64, lr=5e-3, device="cpu", threads=1))
    assert before < 0.3 < 0.6 < m.val_acc
    acc, loss = evaluate(net, digits16.val, batch_size=7)  # any batch size, same answer
    assert acc == pytest.approx(m.val_acc) and loss == pytest.approx(m.val_loss, rel=1e-4)
    assert m.history[-1].train_loss < m.history[0].train_loss


def test_step_budget(digits16) -> None:
    per_epoch = len(digits16.train) // 100
    m = train(
        small_net(), digits16, TrainConfig(max_steps=per_epoch + 3, batch_size=100, device="cpu", threads=1)
    )
    assert m.steps == per_epoch + 3
    assert m.epochs_run == 2 and [h.steps for h in m.history] == [per_epoch, per_epoch + 3]


def test_on_epoch_sees_each_epoch_and_its_exception_propagates(digits16) -> None:
    class Pruned(Exception):
        pass

    seen: list[tuple[int, float]] = []

    def on_epoch(epoch: int, acc: float) -> None:
        seen.append((epoch, acc))
        if epoch == 2:
            raise Pruned("stop")

    threads = torch.get_num_threads()
    with pytest.raises(Pruned, match="stop"):
        train(small_net(), digits16, TrainConfig(epochs=5, device="cpu", threads=1), on_epoch=on_epoch)
    assert [e for e, _ in seen] == [1, 2] and all(0 <= a <= 1 for _, a in seen)
    assert torch.get_num_threads() == threads  # runtime settings restored on the way out
    assert not torch.are_deterministic_algorithms_enabled()


def test_warmup_then_cosine() -> None:
    cfg = TrainConfig(lr=1.0, warmup_fraction=0.1, min_lr_ratio=0.0)
    lrs = [lr_at(s, 100, cfg) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert lrs[10] == pytest.approx(1.0)
    assert lrs[55] == pytest.approx(0.5 * (1 + math.cos(math.pi * 45 / 90)))
    assert all(a >= b for a, b in itertools.pairwise(lrs[10:])) and lrs[-1] < 1e-3


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("epochs", 0),
        ("lr", -1.0),
        ("batch_size", 0),
        ("device", "tpu"),
        ("label_smoothing", 1.0),
        ("threads", 0),
    ],
)
def test_bad_train_config_names_the_field(field: str, value: object) -> None:
    with pytest.raises(ConfigError, match=f"{field}={value!r}"):
        TrainConfig(**{field: value})  # type: ignore[arg-type]


def test_model_that_cannot_take_the_images(digits16) -> None:
    rigid = nn.Sequential(nn.Flatten(), nn.Linear(32 * 32, 10))  # built for 32×32
    with pytest.raises(ConfigError, match=r"img_size=16 \(in_chans=1\) is not allowed"):
        train(rigid, digits16, TrainConfig(epochs=1, device="cpu", threads=1))
    with pytest.raises(ConfigError, match="num_classes=10 does not match"):
        check_fits(small_net(num_classes=7), in_chans=1, img_size=16, num_classes=10)


def test_amp_on_cpu_and_plain_progress_lines_off_a_terminal(digits16, capsys) -> None:
    per_epoch = len(digits16.train) // 128
    cfg = TrainConfig(max_steps=per_epoch + 3, amp=True, device="cpu", threads=1)
    m = train(small_net(), digits16, cfg, progress=True)
    assert m.steps == per_epoch + 3 and math.isfinite(m.train_loss)
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert captured.out == "" and len(lines) == 2, captured.err  # one per epoch, piped
    for line, record in zip(lines, m.history, strict=True):
        assert re.fullmatch(
            rf"\d\d:\d\d:\d\d train epoch {record.epoch}/2: val acc {record.val_acc:.1%} "
            rf"\(step {record.steps}/{m.steps}, \d+\.\d s\)",
            line,
        ), line
    train(small_net(), digits16, TrainConfig(max_steps=2, device="cpu", threads=1), progress=False)
    assert capsys.readouterr() == ("", "")  # --quiet


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised where CUDA is absent")
def test_cuda_without_cuda_is_config_error(digits16) -> None:
    with pytest.raises(ConfigError, match="device='cuda'"):
        train(small_net(), digits16, TrainConfig(device="cuda"))


def test_checkpoint_round_trip_and_atomic_write(tmp_path: Path, digits16) -> None:
    net = small_net()
    m = train(net, digits16, TrainConfig(max_steps=2, device="cpu", threads=1))
    path = save_checkpoint(
        tmp_path / "c" / "ck.pt",
        net,
        {"family": "toy"},
        m,
        {"dataset": "digits"},
        num_classes=10,
        img_size=16,
        in_chans=1,
    )
    ck = load_checkpoint(path)
    assert (ck.num_classes, ck.img_size, ck.in_chans, ck.model_cfg, ck.extra) == (
        10,
        16,
        1,
        {"family": "toy"},
        {"dataset": "digits"},
    )
    assert TrainMetrics.from_dict(ck.metrics) == m  # type: ignore[arg-type]
    assert all(torch.equal(ck.state_dict[k], v) for k, v in net.state_dict().items())
    good = path.read_bytes()
    with pytest.raises(Exception):  # noqa: B017 - an unpicklable extra fails inside torch.save
        save_checkpoint(
            path, net, {"family": "toy"}, m, {"bad": lambda: 0}, num_classes=10, img_size=16, in_chans=1
        )
    assert path.read_bytes() == good and sorted(p.name for p in path.parent.iterdir()) == ["ck.pt"]
    with pytest.raises(ConfigError, match="num_classes is unknown"):
        save_checkpoint(tmp_path / "x.pt", net, {})


def test_bad_checkpoints(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "none.pt")
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(DataError, match=r"junk\.pt: not a readable checkpoint"):
        load_checkpoint(tmp_path / "junk.pt")
    torch.save({"weights": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(DataError, match="not an affinity checkpoint"):
        load_checkpoint(tmp_path / "other.pt")


# -- `affinity train` ----------------------------------------------------------------------------

#: the benchmark's shrunk AS-MLP (benchmarks/train_digits.py), small enough for the test budget
SMALL_AS_MLP = {"dims": (24, 48, 64, 96), "depths": (1, 1, 1, 1), "patch_sizes": (4, 2, 2, 2)}


@pytest.fixture(scope="module")
def small_yaml(tmp_path_factory) -> Path:
    from affinity.models import resolve_model_config
    from affinity.models.config import apply_overrides, save_model_config

    path = tmp_path_factory.mktemp("cfg") / "small_as_mlp.yaml"
    return save_model_config(apply_overrides(resolve_model_config("as_mlp_t"), **SMALL_AS_MLP), path)


def test_cli_trains_digits_to_90_percent_and_rebuilds_from_the_checkpoint(small_yaml: Path) -> None:
    from click.testing import CliRunner

    from affinity.cli import cli
    from affinity.data import load_dataset

    torch.set_num_threads(1)
    result = CliRunner().invoke(
        cli, ["train", str(small_yaml), "--epochs", "4", "--device", "cpu", "--quiet"]
    )
    assert result.exit_code == 0, result.output
    out = Path("results/train/small_as_mlp")
    record = json.loads((out / "metrics.json").read_text())
    acc = record["metrics"]["val_acc"]
    assert acc >= 0.90, record["metrics"]["history"]
    assert record["params"] < 1_000_000 and record["flops"] > 0
    assert f"val accuracy {acc:.2%}" in result.output and "multiply-adds" in result.output
    assert f"params {record['params'] / 1e6:.3f}M" in result.output
    ck = load_checkpoint(out / "checkpoint.pt")
    assert (ck.num_classes, ck.img_size, ck.in_chans) == (10, 32, 1)
    again, _ = evaluate(ck.build_model(), load_dataset("digits").val)
    assert again == pytest.approx(acc)


def _exit_2(argv: list[str], capsys) -> str:
    from affinity.cli import main

    with pytest.raises(SystemExit) as exc:
        main(argv)
    err = capsys.readouterr().err
    assert exc.value.code == 2, err
    assert err.count("\n") == 1 and "Traceback" not in err
    return err


def test_cli_bad_inputs_are_one_line_exit_2(tmp_path: Path, small_yaml: Path, capsys) -> None:
    from PIL import Image

    train_cmd = ["train", str(small_yaml), "--epochs", "1", "--quiet", "--run-dir", str(tmp_path / "o")]
    err = _exit_2([*train_cmd, "--dataset", f"npz:{tmp_path / 'missing.npz'}"], capsys)
    assert "missing.npz: no such file" in err
    (tmp_path / "empty").mkdir()
    assert "no class subfolders" in _exit_2(
        [*train_cmd, "--dataset", f"imagefolder:{tmp_path / 'empty'}"], capsys
    )
    for cls in ("a", "b"):
        (tmp_path / "imgs" / cls).mkdir(parents=True)
        Image.new("L", (8, 8)).save(tmp_path / "imgs" / cls / "0.png")
    (tmp_path / "imgs" / "a" / "bad.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    err = _exit_2([*train_cmd, "--dataset", f"imagefolder:{tmp_path / 'imgs'}"], capsys)
    assert "bad.jpg: not a readable image" in err
    (tmp_path / "cifar").mkdir()
    for name in [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]:
        (tmp_path / "cifar" / name).write_bytes(__import__("pickle").dumps({"images": [1, 2]}))
    err = _exit_2([*train_cmd, "--dataset", f"cifar10:{tmp_path / 'cifar'}"], capsys)
    assert "data_batch_1: no 'data' entry" in err
    np.savez(tmp_path / "d.npz", x=np.zeros((4, 8, 8), np.uint8), y=np.array([0, 1, -3, 1]))
    assert "label -3 is out of range" in _exit_2(
        [*train_cmd, "--dataset", f"npz:{tmp_path / 'd.npz'}"], capsys
    )
    err = _exit_2([*train_cmd, "--img-size", "20"], capsys)
    assert "img_size=20 is not allowed" in err
    assert "unknown dataset 'mnist'" in _exit_2([*train_cmd, "--dataset", "mnist"], capsys)
    assert "--lr: -1.0 is not allowed; allowed: a number > 0" in _exit_2([*train_cmd, "--lr", "-1"], capsys)
    assert not (tmp_path / "o").exists()  # nothing written on bad input
