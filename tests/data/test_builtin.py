"""The two datasets that need no files: digits (the default) and the synthetic arrangement task."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from affinity.data import DATASETS, load_dataset
from affinity.data.synthetic import MOTIF_NAMES, MOTIFS, class_table, render
from affinity.errors import ConfigError, DataError, UnknownNameError


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def test_registry_lists_every_format() -> None:
    assert DATASETS.names() == ["cifar10", "cifar100", "digits", "imagefolder", "npz", "synthetic"]


def test_unknown_dataset_names_the_closest() -> None:
    with pytest.raises(UnknownNameError, match="did you mean digits"):
        load_dataset("digit")


def test_digits_default(digits) -> None:
    assert (digits.num_classes, digits.in_chans, digits.img_size) == (10, 1, 32)
    assert len(digits.train) + len(digits.val) == 1797
    assert digits.train.x.shape[1:] == (1, 32, 32)
    assert not digits.flip
    # stratified: every class keeps its share (about 20%) in val
    counts = torch.bincount(digits.val.y, minlength=10)
    total = counts + torch.bincount(digits.train.y, minlength=10)
    assert torch.all((counts.float() / total.float() - 0.2).abs() < 0.01)


def test_normalisation_comes_from_the_train_split(digits) -> None:
    x, _ = digits.train.batch(torch.arange(len(digits.train)))
    assert abs(float(x.mean())) < 1e-4
    assert abs(float(x.std()) - 1) < 1e-3
    raw = digits.train.x.float() / 16
    assert digits.mean[0] == pytest.approx(float(raw.mean()), abs=1e-5)


def test_digits_split_is_fixed_by_the_seed(digits) -> None:
    again = load_dataset("digits")
    other = load_dataset("digits", seed=1)
    assert torch.equal(again.val.x, digits.val.x)
    assert not torch.equal(other.val.x, digits.val.x)


def test_digits_resizes_and_rejects_bad_sizes() -> None:
    d = load_dataset("digits", img_size=16, val_fraction=0.5)
    assert d.train.x.shape[-2:] == (16, 16)
    assert abs(len(d.val) - 1797 / 2) < 10
    with pytest.raises(ConfigError, match="img_size=0"):
        load_dataset("digits", img_size=0)
    with pytest.raises(ConfigError, match=r"val_fraction=1\.5"):
        load_dataset("digits", val_fraction=1.5)
    with pytest.raises(DataError, match="digits:foo"):
        load_dataset("digits:foo")


def test_synthetic_is_seeded_and_sized() -> None:
    a = load_dataset("synthetic:classes=8,size=24,n=160")
    b = load_dataset("synthetic:classes=8,size=24,n=160")
    c = load_dataset("synthetic:classes=8,size=24,n=160", seed=3)
    assert (a.num_classes, a.img_size, len(a.train) + len(a.val)) == (8, 24, 160)
    assert torch.equal(a.train.x, b.train.x) and torch.equal(a.train.y, b.train.y)
    assert not torch.equal(a.train.x, c.train.x)
    assert torch.bincount(a.train.y).tolist() == [16] * 8  # balanced, stratified
    assert load_dataset("synthetic", img_size=40).train.x.shape[-1] == 40


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ("synthetic:classes=1", "classes=1"),
        ("synthetic:classes=61", "classes=61"),
        ("synthetic:colour=3", "'colour=3'"),
        ("synthetic:size=big", "size='big'"),
        ("synthetic:n=3", "n=3"),
    ],
)
def test_synthetic_rejects_bad_options(spec: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        load_dataset(spec)


def test_synthetic_size_conflict_is_named() -> None:
    with pytest.raises(ConfigError, match="size=24 conflicts with img_size=32"):
        load_dataset("synthetic:size=24", img_size=32)


def test_synthetic_classes_need_the_arrangement() -> None:
    table = class_table(12)
    # groups of four: the same two motifs, differing only by order and direction
    for g in range(3):
        group = table[4 * g : 4 * g + 4]
        assert len({frozenset((a, b)) for a, b, _ in group}) == 1
        assert len(set(group)) == 4


def _motif_at(img: np.ndarray, motif: int) -> tuple[int, int]:
    pattern = MOTIFS[MOTIF_NAMES[motif]]
    best, where = -1.0, (0, 0)
    for r in range(img.shape[0] - 2):
        for c in range(img.shape[1] - 2):
            score = float((img[r : r + 3, c : c + 3] * (2 * pattern - 1)).sum())
            if score > best:
                best, where = score, (r, c)
    return where


@pytest.mark.parametrize("relation", ["right", "below"])
def test_render_places_the_second_motif_by_the_relation(relation: str) -> None:
    rng = np.random.default_rng(0)
    for _ in range(5):
        img = render(0, 5, relation, size=16, rng=rng, noise=0.0, clutter=0)  # hbar, then ring
        (r0, c0), (r1, c1) = _motif_at(img, 0), _motif_at(img, 5)
        if relation == "right":
            assert c1 >= c0 + 4 and abs(r1 - r0) <= 1
        else:
            assert r1 >= r0 + 4 and abs(c1 - c0) <= 1
