"""`affinity show MODEL|CHECKPOINT`: a layer's maps and learned tiles, as data and as files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from affinity.cli import cli, main
from affinity.errors import ConfigError
from affinity.models import create_model
from affinity.report import layers
from affinity.report.fields import crop_fields
from affinity.report.layers import (
    capture_affinity_inputs,
    combined_field,
    find_mixers,
    layer_fields,
    select_mixer,
)
from affinity.train import save_checkpoint

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def small(name: str, img_size: int = 32, **overrides: object) -> torch.nn.Module:
    return create_model(name, num_classes=10, img_size=img_size, in_chans=1, **overrides).eval()


def test_as_mlp_layer_is_the_cross_per_shift_group() -> None:
    # 20 channels: torch.chunk makes 5 groups of 4 (with 16 it makes 4 groups of 4, and the
    # released AS-MLP shift then has no group moving by -2: the cross loses two arms)
    model = small("as_mlp_t", dims=(20, 40, 60, 80), depths=(1, 1, 1, 1))
    data = layer_fields(model, layer=0, img_size=32, in_chans=1, query=None)
    assert data.hw == (8, 8)
    assert len(data.fields) == 2  # the W-shift and H-shift branches; projections: no whole-mixer map
    union = data.fields[0].support | data.fields[1].support
    q = data.fields[0].query
    assert q == (4, 4)
    got = {(int(r) - 4, int(c) - 4) for r, c in zip(*np.nonzero(union))}
    assert got == {(0, 0), (1, 0), (2, 0), (-1, 0), (-2, 0), (0, 1), (0, 2), (0, -1), (0, -2)}
    assert len(data.fields[0].maps) == 5 and data.tiles == []  # shifts learn nothing
    assert "do not depend on the input" in data.note


def test_mixer_tiles_are_the_token_mlp_weights_from_a_checkpoint() -> None:
    # patch 2 on 32×32: N = 16·16 = 256 tokens = D_S hidden units, so only the mixer's
    # config (out_tokens / in_tokens) tells tokens from hidden units
    model = small("mixer_s16", img_size=32, patch_size=2, dims=16, depths=1)
    save_checkpoint("ckpt.pt", model, model.cfg.to_dict(), num_classes=10, img_size=32, in_chans=1)
    loaded, label, size, in_chans = layers.load_model("ckpt.pt")
    assert (label, size, in_chans) == ("ckpt", 32, 1)
    data = layer_fields(loaded, layer=0, img_size=size, in_chans=in_chans, query=None)
    assert data.fields == []  # N -> D_S -> N through hidden units: no token map, tiles instead
    assert len(data.tiles) == 2 and len(data.skipped) == 2
    first, second = (a.weight.detach().double() for a in find_mixers(model)[0][1].branch_affinities())
    assert first.shape == second.shape == (1, 256, 256)
    assert data.tiles[0].tiles.shape == (256, 16, 16)  # one tile per hidden unit
    # first layer: row k (what hidden unit k reads); second: column k (where it writes)
    np.testing.assert_array_equal(data.tiles[0].tiles[3], first[0, 3].reshape(16, 16).numpy())
    np.testing.assert_array_equal(data.tiles[1].tiles[5], second[0, :, 5].reshape(16, 16).numpy())

    result = CliRunner().invoke(cli, ["show", "ckpt.pt", "--file", "m.png"])
    assert result.exit_code == 0, result.output
    for png in ("m_tiles0.png", "m_tiles1.png"):
        assert Path(png).read_bytes().startswith(PNG_MAGIC)
    assert not Path("m.png").exists()  # nothing to map: no empty figure
    assert "no map for" in result.output


def test_show_checkpoint_at_another_size_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    model = small("resmlp_s12", img_size=32, patch_size=8, dims=16, depths=1)
    save_checkpoint("r.pt", model, model.cfg.to_dict(), num_classes=10, img_size=32, in_chans=1)
    with pytest.raises(SystemExit) as exc:
        main(["show", "r.pt", "--img-size", "64"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--img-size=64" in err[0] and "32" in err[0]


def test_show_model_writes_the_layer_figure() -> None:
    result = CliRunner().invoke(
        cli, ["show", "resmlp_s12", "--img-size", "64", "--layer", "1", "--query", "0,0", "--file", "r.png"]
    )
    assert result.exit_code == 0, result.output
    assert Path("r.png").read_bytes().startswith(PNG_MAGIC)
    assert Path("r_tiles.png").read_bytes().startswith(PNG_MAGIC)  # ResMLP's 16 rows of A as 4×4 tiles


def test_container_whole_mixer_map_row_equals_materialize(monkeypatch: pytest.MonkeyPatch) -> None:
    model = small("container_light", img_size=32, dims=(16, 32, 32, 32), depths=(1, 1, 1, 1), heads=2)
    _, mixer = select_mixer(find_mixers(model), -1)
    inputs = capture_affinity_inputs(model, mixer, torch.randn(1, 1, 32, 32))
    hw = tuple(next(iter(inputs.values()))[0].shape[-2:])
    a = combined_field(mixer, inputs, (0, 0), hw)  # type: ignore[arg-type]
    assert a is not None and a.title == "whole mixer: α·attention + β·dwconv"
    monkeypatch.setattr(layers, "MATERIALIZE_MAX_TOKENS", 0)
    b = combined_field(mixer, inputs, (0, 0), hw)  # type: ignore[arg-type]
    assert b is not None
    np.testing.assert_allclose(a.maps, b.maps, atol=1e-6)
    # convex at init: α = β = 0.5; the whole map is their mix of the two branch maps
    assert torch.sigmoid(mixer.w).item() == 0.5


def test_crop_keeps_every_nonzero_weight() -> None:
    model = small("as_mlp_t", img_size=224, dims=(8, 16, 24, 32), depths=(1, 1, 1, 1))
    data = layer_fields(model, layer=0, img_size=224, in_chans=1, query="10,50")
    cropped = crop_fields(data.fields)
    assert cropped[0].maps.shape[-2:] == (11, 11)
    for full, cut in zip(data.fields, cropped):
        assert np.abs(cut.maps).sum() == np.abs(full.maps).sum()
        r0, c0 = cut.origin
        np.testing.assert_array_equal(full.maps[:, r0 : r0 + 11, c0 : c0 + 11], cut.maps)


def test_select_mixer_by_index_name_and_bad_layer() -> None:
    model = small("as_mlp_t", dims=(16, 32, 48, 64), depths=(1, 1, 1, 1))
    mixers = find_mixers(model)
    assert select_mixer(mixers, -1) == mixers[-1]
    assert select_mixer(mixers, mixers[2][0]) == mixers[2]
    with pytest.raises(ConfigError, match="--layer=4"):
        select_mixer(mixers, "4")
    with pytest.raises(ConfigError, match="--layer='nope'"):
        select_mixer(mixers, "nope")


def test_class_token_sequence_goes_back_to_the_patch_grid() -> None:
    # DeiT: 1 class token + 4×4 patches, carried as a 1×17 map; the query is on the 4×4 grid
    model = small("deit_s", img_size=32, patch_size=8, dims=24, depths=1, heads=2)
    data = layer_fields(model, layer=0, img_size=32, in_chans=1, query="1,2")
    assert data.hw == (4, 4)
    (f,) = data.fields
    assert f.query == (1, 2) and f.maps.shape == (2, 4, 4)
    mixer = find_mixers(model)[0][1]
    inputs = capture_affinity_inputs(
        model, mixer, torch.randn(1, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    )
    _, x = next(iter(inputs.values()))
    row = mixer.branch_affinities()[0].materialize(x)[0, :, 1 + 1 * 4 + 2]  # (C, 17)
    for head in range(2):
        np.testing.assert_allclose(
            f.maps[head], row[head * 12, 1:].reshape(4, 4).detach().double().numpy(), atol=1e-6
        )
        assert f.labels[head].startswith(f"head {head} · cls ")
        # each softmax row sums to 1 over the class token and the 16 patches
        assert abs(f.maps[head].sum() + float(f.labels[head].split("cls ")[1]) - 1.0) < 1e-2
