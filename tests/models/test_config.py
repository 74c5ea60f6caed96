"""Model configs: dict/YAML round trips, key paths in errors, overrides, input-size checks."""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from affinity.errors import ConfigError, UnknownNameError
from affinity.models import (
    MODELS,
    ModelCfg,
    create_model,
    list_models,
    load_model_config,
    mixers,
    resolve_model_config,
    save_model_config,
)
from affinity.models.config import apply_overrides
from affinity.models.mixers import as_mlp_mixer, attention_mixer


@pytest.mark.parametrize("name", list_models())
def test_dict_and_yaml_round_trip(name: str, tmp_path) -> None:
    cfg = MODELS.get(name).cfg
    assert ModelCfg.from_dict(cfg.to_dict()) == cfg
    assert ModelCfg.from_dict(cfg.to_dict()).fingerprint() == cfg.fingerprint()
    path = save_model_config(cfg, tmp_path / f"{name}.yaml")
    assert load_model_config(path) == cfg
    assert resolve_model_config(str(path)) == cfg


def test_unknown_key_names_its_path(tmp_path) -> None:
    data = MODELS.get("as_mlp_t").cfg.to_dict()
    data["stages"][2]["mixer"]["branches"][0]["params"]["shift_sizes"] = 7
    with pytest.raises(ConfigError, match=r"model\.stages\[2\]\.mixer\.branches\[0\]\.params\.shift_sizes"):
        ModelCfg.from_dict(data)
    data = MODELS.get("as_mlp_t").cfg.to_dict()
    data["stages"][1]["widht"] = 3
    with pytest.raises(ConfigError, match=r"model\.stages\[1\]\.widht"):
        ModelCfg.from_dict(data)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"model": {**MODELS.get("deit_s").cfg.to_dict(), "colour": 1}}))
    with pytest.raises(ConfigError, match=r"model\.colour"):
        load_model_config(path)


def test_bad_values_name_the_field() -> None:
    cfg = MODELS.get("as_mlp_t").cfg
    with pytest.raises(ConfigError, match="norm='batchnrom'"):
        dataclasses.replace(cfg, norm="batchnrom")
    with pytest.raises(ConfigError, match="depth=0"):
        apply_overrides(cfg, depths=(2, 0, 6, 2))
    with pytest.raises(ConfigError, match="shift_size=4"):
        create_model("as_mlp_t", shift_size=4)  # even shift sizes are not allowed by the affinity
    with pytest.raises(ConfigError, match="colour"):
        apply_overrides(cfg, colour=3)
    with pytest.raises(ConfigError, match="heads=5"):
        create_model("deit_s", heads=5)  # 384 channels do not split into 5 heads


def test_overrides_change_the_architecture() -> None:
    cfg = apply_overrides(
        MODELS.get("as_mlp_t").cfg, dims=(8, 16, 32, 64), depth=1, shift_size=3, padding="circular"
    )
    assert [s.dim for s in cfg.stages] == [8, 16, 32, 64]
    assert all(s.depth == 1 for s in cfg.stages)
    for s in cfg.stages:
        assert {b.params["shift_size"] for b in s.mixer.branches} == {3}
        assert {b.params["padding"] for b in s.mixer.branches} == {"circular"}
    heads = apply_overrides(MODELS.get("swin_t").cfg, heads=(1, 2, 4, 8))
    assert [s.mixer.branches[0].params["heads"] for s in heads.stages] == [1, 2, 4, 8]
    # Swin's alternation: the shift override changes the shifted blocks only
    shifted = apply_overrides(MODELS.get("swin_t").cfg, shift_size=2)
    assert shifted.stages[0].mixer.branches[0].params["shift_size"] == 0
    assert shifted.stages[0].alt_mixer.branches[0].params["shift_size"] == 2  # type: ignore[union-attr]
    swapped = apply_overrides(MODELS.get("as_mlp_t").cfg, mixer=attention_mixer(heads=2))
    assert all(s.mixer.branches[0].affinity == "attention" for s in swapped.stages)


def test_presets_build_valid_mixers() -> None:
    assert as_mlp_mixer(shift_size=7, connection="serial").connection == "serial"
    for name in mixers.__all__:  # every preset the module exports
        kwargs = {"heads": 2} if name in ("attention_mixer", "container_mixer", "pam_mixer") else {}
        kwargs = {"hidden": 8} if name == "mixer_token_mlp" else kwargs
        kwargs = {"share": 2} if name == "repmlp_mixer" else kwargs
        mixer = getattr(mixers, name)(**kwargs)
        if name != "pam_mixer":  # PAM needs a class-token sequence; built in the deit-like model
            create_model("as_mlp_mobile", num_classes=2, img_size=32, in_chans=1, depth=1, mixer=mixer)


def test_img_size_the_model_cannot_take() -> None:
    with pytest.raises(ConfigError, match=r"img_size=100 .*divisible by the total stride 32"):
        create_model("as_mlp_t", img_size=100)
    with pytest.raises(ConfigError, match=r"img_size=64 .*window_size=7"):
        create_model("swin_t", img_size=64)
    create_model("swin_t", img_size=32, window_size=4, depth=2, num_classes=2)


def test_unknown_name_lists_the_closest() -> None:
    with pytest.raises(UnknownNameError, match="as_mlp_t"):
        resolve_model_config("as_mlp_tt")
    with pytest.raises(UnknownNameError, match="closest"):
        create_model("resmlp_s13")


def test_malformed_yaml_is_one_line_exit_2(tmp_path, capsys) -> None:
    from affinity.cli import main

    bad = tmp_path / "bad.yaml"
    bad.write_text("family: [hierarchical\n")
    with pytest.raises(SystemExit) as exc:
        main(["profile", str(bad), "--no-timing"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "bad.yaml" in err[0] and "not valid YAML: line 2, column 1" in err[0]
