"""Reading files, reporting keys by name, metadata, and the commands that take --checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from affinity.checkpoints import FORMATS, read_checkpoint, write_safetensors
from affinity.cli import cli, main
from affinity.errors import ConfigError, DataError
from affinity.models import MODELS, create_model, save_model_config
from affinity.models.mixers import mixer_token_mlp
from affinity.report.layers import layer_fields
from tests.checkpoints import layouts as L
from tests.checkpoints.timm_import import import_timm

PNG_MAGIC = b"\x89PNG"
_SMALL_MIXER = {"img_size": 32, "patch_size": 8, "dims": 16, "depths": 2, "channel_mlp_ratio": 4.0}


def _small_mixer(**kw):
    return create_model("mixer_s16", num_classes=10, mixer=mixer_token_mlp(hidden=8), **_SMALL_MIXER, **kw)


def _timm_mixer_state(seed: int = 0) -> dict[str, torch.Tensor]:
    return L.fill(L.timm_mixer(c=16, n=16, ds=8, dc=64, p=8, depth=2, classes=10), seed)


def _exit_line(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_every_format_names_its_source_and_is_detected_alone() -> None:
    names = [f.name for f in FORMATS]
    assert len(names) == len(set(names))
    for fmt in FORMATS:
        assert fmt.source and fmt.signature and fmt.models


@pytest.mark.parametrize(
    "wrap",
    [
        lambda s: s,
        lambda s: {"state_dict": s, "epoch": 3},
        lambda s: {"model": s, "optimizer": {"lr": 0.1}},
        lambda s: {f"module.{k}": v for k, v in s.items()},
    ],
    ids=["bare", "state_dict", "model", "ddp-prefix"],
)
def test_pth_wrappers_unwrap(tmp_path: Path, wrap) -> None:
    state = _timm_mixer_state()
    torch.save(wrap(state), tmp_path / "m.pth")
    model = create_model(
        "mixer_s16", checkpoint_path=tmp_path / "m.pth", mixer=mixer_token_mlp(hidden=8), **_SMALL_MIXER
    )
    assert model.load_report.ok and model.load_report.loaded == len(state)
    assert torch.equal(model.head.weight, state["head.weight"])


def test_safetensors_roundtrip_restores_config_and_metadata(tmp_path: Path) -> None:
    model = _small_mixer(in_chans=1)
    model.pretrained_cfg = model.pretrained_cfg.replace(
        mean=(0.25,), std=(0.5,), interpolation="bilinear", crop_pct=1.0, label_names=tuple("abcdefghij")
    )
    meta = {
        "model_cfg": model.cfg.to_dict(),
        "num_classes": 10,
        "img_size": 32,
        "in_chans": 1,
        "pretrained_cfg": model.pretrained_cfg.to_dict(),
    }
    path = write_safetensors(tmp_path / "m.safetensors", model.state_dict(), meta)
    loaded = create_model(path)  # the file carries its architecture
    assert loaded.load_report.format == "affinity" and loaded.load_report.ok
    assert (loaded.num_classes, loaded.img_size, loaded.in_chans) == (10, 32, 1)
    cfg = loaded.pretrained_cfg
    assert (cfg.mean, cfg.std, cfg.interpolation, cfg.crop_pct) == ((0.25,), (0.5,), "bilinear", 1.0)
    assert cfg.label_names == tuple("abcdefghij") and cfg.input_size == (1, 32, 32)
    assert "m.safetensors (affinity)" in cfg.source
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded.eval()(x), model.eval()(x))


def test_train_checkpoint_loads_with_its_geometry(tmp_path: Path) -> None:
    from affinity.train import save_checkpoint

    model = _small_mixer(in_chans=1)
    save_checkpoint(tmp_path / "c.pt", model, model.cfg.to_dict(), num_classes=10, img_size=32, in_chans=1)
    loaded = create_model(tmp_path / "c.pt")
    assert (loaded.num_classes, loaded.img_size, loaded.in_chans) == (10, 32, 1)
    assert torch.equal(loaded.head.weight, model.head.weight)


def test_missing_and_unexpected_keys_are_named(tmp_path: Path) -> None:
    state = _timm_mixer_state()
    del state["blocks.1.mlp_tokens.fc2.bias"]
    state["blocks.0.extra.weight"] = torch.zeros(3)
    torch.save(state, tmp_path / "m.pth")
    with pytest.raises(ConfigError) as exc:
        create_model(
            "mixer_s16", checkpoint_path=tmp_path / "m.pth", mixer=mixer_token_mlp(hidden=8), **_SMALL_MIXER
        )
    msg = str(exc.value)
    assert "\n" not in msg and "timm_mixer" in msg
    assert "1 missing keys: stages.0.blocks.1.mixer.branches.1.affinity.bias" in msg
    assert "1 unexpected keys: blocks.0.extra.weight" in msg
    loose = create_model(
        "mixer_s16",
        checkpoint_path=tmp_path / "m.pth",
        strict=False,
        mixer=mixer_token_mlp(hidden=8),
        **_SMALL_MIXER,
    )
    report = loose.load_report
    assert report.missing == ["stages.0.blocks.1.mixer.branches.1.affinity.bias"]
    assert report.unexpected == ["blocks.0.extra.weight"]
    assert torch.equal(loose.head.weight, state["head.weight"])


def test_shape_mismatch_names_key_and_shapes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = _timm_mixer_state()
    torch.save(state, tmp_path / "m.pth")
    cfg_path = save_model_config(_small_mixer().cfg, "s.yaml")
    line = _exit_line(
        ["profile", str(cfg_path), "--checkpoint", str(tmp_path / "m.pth"), "--img-size", "64"], capsys
    )
    # at 64 px there are 64 tokens, not 16: the token MLP does not fit
    assert "stages.0.blocks.0.mixer.branches.0.affinity.weight (from blocks.0.mlp_tokens.fc1.weight)" in line
    assert "(8, 16) -> (1, 8, 64)" in line


def test_unknown_layout_and_bad_files_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    torch.save({"foo.weight": torch.zeros(2)}, tmp_path / "x.pth")
    line = _exit_line(["profile", "mixer_s16", "--checkpoint", str(tmp_path / "x.pth")], capsys)
    assert "match no known layout" in line and "timm_vit" in line
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    line = _exit_line(["show", "mixer_s16", "--checkpoint", str(tmp_path / "junk.pth")], capsys)
    assert "not a readable checkpoint" in line
    with pytest.raises(DataError):
        read_checkpoint(tmp_path / "missing.pth")
    line = _exit_line(["profile", str(tmp_path / "x.pth")], capsys)  # a foreign file alone: no architecture
    assert "carries no model config" in line and "--checkpoint" in line


def test_other_class_count_keeps_all_but_the_classifier(tmp_path: Path) -> None:
    state = _timm_mixer_state()
    torch.save(state, tmp_path / "m.pth")
    model = create_model(
        "mixer_s16",
        checkpoint_path=tmp_path / "m.pth",
        num_classes=3,
        mixer=mixer_token_mlp(hidden=8),
        **_SMALL_MIXER,
    )
    assert model.load_report.head_reset and model.load_report.ok
    assert model.head.weight.shape == (3, 16)
    assert torch.equal(model.stages[0].embed.proj.weight, state["stem.proj.weight"])
    assert model.pretrained_cfg.num_classes == 3


def test_timm_keywords() -> None:
    with pytest.raises(ConfigError, match="checkpoint_path"):
        create_model("deit_s", pretrained=True)
    model = create_model(
        "deit_s", depths=1, dims=48, heads=2, drop_rate=0.3, drop_path_rate=0.1, global_pool="avg"
    )
    assert model.cfg.pool == "avg" and model.cfg.drop_path_rate == 0.1 and model.head_drop.p == 0.3
    assert model.get_classifier() is model.head
    assert model.no_weight_decay() == {"stages.0.tokens.cls_token", "stages.0.tokens.pos_embed"}
    swin = create_model(
        "swin_t", img_size=64, dims=(8, 16, 32, 64), depths=(2, 2, 2, 2), heads=(1, 2, 4, 8), window_size=4
    )
    assert (
        all(n.endswith("rel_pos_table") for n in swin.no_weight_decay()) and len(swin.no_weight_decay()) == 8
    )
    with pytest.raises(ConfigError, match="drop_rate"):
        create_model("deit_s", drop_rate=1.5)


def test_forward_intermediates_per_stage_and_per_block() -> None:
    swin = create_model(
        "swin_t", img_size=64, dims=(8, 16, 32, 64), depths=(2, 2, 2, 2), heads=(1, 2, 4, 8), window_size=4
    )
    assert [f["reduction"] for f in swin.feature_info] == [4, 8, 16, 32]
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        final, maps = swin.forward_intermediates(x)
        torch.testing.assert_close(final, swin.forward_features(x))
        assert [tuple(m.shape) for m in maps] == [(1, 8, 16, 16), (1, 16, 8, 8), (1, 32, 4, 4), (1, 64, 2, 2)]
        last2 = swin.forward_intermediates(x, indices=2, intermediates_only=True)
        assert [m.shape[1] for m in last2] == [32, 64]
    deit = create_model("deit_s", img_size=32, patch_size=8, dims=24, depths=3, heads=3)
    assert len(deit.feature_info) == 3
    with torch.no_grad():
        maps = deit.forward_intermediates(
            x[:, :, :32, :32], indices=[0, -1], intermediates_only=True, stop_early=True
        )
    assert [tuple(m.shape) for m in maps] == [(1, 24, 4, 4), (1, 24, 4, 4)]  # class token dropped
    with pytest.raises(ConfigError, match="indices"):
        deit.forward_intermediates(x[:, :, :32, :32], indices=[5])


def test_every_registered_model_carries_its_input_recipe() -> None:
    for name in MODELS.names():
        cfg = MODELS.get(name).pretrained
        assert cfg.input_size == (3, 224, 224) and cfg.num_classes == 1000
        assert len(cfg.mean) == len(cfg.std) == 3 and cfg.interpolation == "bicubic"
    assert MODELS.get("mixer_b16").pretrained.mean == (0.5, 0.5, 0.5)
    assert MODELS.get("swin_t").pretrained.crop_pct == 0.9
    model = _small_mixer(in_chans=1)  # the model's recipe follows its geometry
    assert model.pretrained_cfg.input_size == (1, 32, 32) and model.pretrained_cfg.num_classes == 10
    assert model.pretrained_cfg.mean == (0.5,) and model.pretrained_cfg["std"] == (0.5,)


@pytest.mark.skipif(import_timm() is None, reason="timm is not installed")
@pytest.mark.parametrize(
    "ours, theirs",
    [
        ("mixer_b16", "mixer_b16_224"),
        ("resmlp_s12", "resmlp_12_224"),
        ("resmlp_b24_8", "resmlp_big_24_224"),
        ("deit_s", "deit_small_patch16_224"),
        ("swin_t", "swin_tiny_patch4_window7_224"),
    ],
)
def test_recipe_matches_timms_pretrained_cfg(ours: str, theirs: str) -> None:
    from timm.models import get_pretrained_cfg

    ref = get_pretrained_cfg(theirs).to_dict()
    mine = MODELS.get(ours).pretrained
    assert mine.input_size == tuple(ref["input_size"]) and mine.interpolation == ref["interpolation"]
    assert mine.crop_pct == ref["crop_pct"] and mine.num_classes == ref["num_classes"]
    assert mine.mean == pytest.approx(ref["mean"]) and mine.std == pytest.approx(ref["std"])


def test_show_draws_a_converted_checkpoints_learned_token_weights(tmp_path: Path) -> None:
    """The Mixer paper's figure: each hidden unit's token-mixing weights, here from a timm
    checkpoint, drawn as for any model: tile k is row k of the raw ``mlp_tokens.fc1.weight``."""
    state = _timm_mixer_state(seed=5)
    torch.save(state, tmp_path / "m.pth")
    cfg_path = save_model_config(_small_mixer().cfg, tmp_path / "small.yaml")
    from affinity.report.layers import load_model

    model, _, size, in_chans = load_model(str(cfg_path), 32, str(tmp_path / "m.pth"))
    data = layer_fields(model, layer=1, img_size=size, in_chans=in_chans, query=None)
    raw = state["blocks.1.mlp_tokens.fc1.weight"]  # (D_S, N)
    assert data.tiles[0].tiles.shape == (8, 4, 4)
    for k in (0, 7):
        torch.testing.assert_close(torch.as_tensor(data.tiles[0].tiles[k]).float(), raw[k].reshape(4, 4))
    result = CliRunner().invoke(
        cli,
        [
            "show",
            str(cfg_path),
            "--checkpoint",
            str(tmp_path / "m.pth"),
            "--img-size",
            "32",
            "--file",
            "s.png",
        ],
    )
    assert result.exit_code == 0, result.output
    assert Path("s_tiles0.png").read_bytes().startswith(PNG_MAGIC)


def test_profile_with_a_checkpoint_takes_its_geometry(tmp_path: Path) -> None:
    torch.save(_timm_mixer_state(), tmp_path / "m.pth")
    cfg_path = save_model_config(_small_mixer().cfg, tmp_path / "small.yaml")
    result = CliRunner().invoke(
        cli,
        ["profile", str(cfg_path), "--checkpoint", str(tmp_path / "m.pth"), "--img-size", "32", "--no-timing",
         "--format", "json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["img_size"] == 32
    assert data["params"] == sum(t.numel() for t in _timm_mixer_state().values())


def test_train_starts_from_a_checkpoint_and_writes_the_input_recipe(tmp_path: Path) -> None:
    """--checkpoint: every weight but a classifier of another class count is the starting point;
    the checkpoint written carries the data's normalisation and class names, which loading
    restores."""
    start = create_model(
        "as_mlp_t", num_classes=5, img_size=32, in_chans=1, dims=(8, 16, 16, 16), depths=(1, 1, 1, 1)
    )
    meta = {"model_cfg": start.cfg.to_dict(), "num_classes": 5, "img_size": 32, "in_chans": 1}
    weights = write_safetensors(tmp_path / "start.safetensors", start.state_dict(), meta)
    cfg = save_model_config(start.cfg, tmp_path / "small.yaml")
    out = tmp_path / "run"
    argv = ["train", str(cfg), "--checkpoint", str(weights), "--epochs", "1", "--lr", "1e-12"]
    result = CliRunner().invoke(cli, [*argv, "--threads", "1", "--quiet", "--run-dir", str(out)])
    assert result.exit_code == 0, result.output
    trained = create_model(out / "checkpoint.pt")
    stem = trained.stages[0].embed.proj.weight
    torch.testing.assert_close(stem, start.stages[0].embed.proj.weight, atol=1e-6, rtol=0)
    assert trained.head.weight.shape == (10, 16)  # digits: 10 classes, a fresh classifier
    recipe = trained.pretrained_cfg
    assert recipe.input_size == (1, 32, 32) and recipe.num_classes == 10 and recipe.crop_pct == 1.0
    assert recipe.label_names is not None and len(recipe.label_names) == 10
    record = json.loads((out / "metrics.json").read_text())
    assert recipe.mean == pytest.approx(record["pretrained_cfg"]["mean"]) and len(recipe.mean) == 1
    assert 0.0 < recipe.mean[0] < 1.0 and record["pretrained_cfg"]["source"] == "affinity train on digits"
    assert recipe.source == f"{out / 'checkpoint.pt'} (affinity)"  # where the weights were loaded from
