"""Batch augmentation: crops shift content within the padding, flips mirror, a seed fixes both."""

from __future__ import annotations

import torch

from affinity.data.augment import random_crop, random_flip


def test_random_crop_is_a_bounded_shift() -> None:
    x = torch.zeros(64, 1, 9, 9)
    x[:, 0, 4, 4] = 1.0  # one bright pixel in the centre
    out = random_crop(x, 2, torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    pos = out[:, 0].flatten(1).argmax(1)
    rows, cols = pos // 9, pos % 9
    assert torch.all(out.flatten(1).sum(1) == 1)  # a shift of <= pad never loses the centre
    assert rows.min() >= 2 and rows.max() <= 6 and cols.min() >= 2 and cols.max() <= 6
    assert len(set(zip(rows.tolist(), cols.tolist()))) > 10  # shifts vary across the batch


def test_random_crop_keeps_each_image_whole_when_unshifted() -> None:
    x = torch.randn(32, 3, 8, 8)
    out = random_crop(x, 1, torch.Generator().manual_seed(1))
    same = [torch.equal(out[i], x[i]) for i in range(32)]
    assert any(same)  # offset (1, 1) is the identity
    assert torch.equal(random_crop(x, 1, torch.Generator().manual_seed(1)), out)
    assert torch.equal(random_crop(x, 0, torch.Generator()), x)


def test_random_flip_mirrors_about_half() -> None:
    x = torch.randn(200, 1, 4, 4)
    out = random_flip(x, torch.Generator().manual_seed(0))
    flipped = torch.tensor([torch.equal(out[i], x[i].flip(-1)) for i in range(200)])
    kept = torch.tensor([torch.equal(out[i], x[i]) for i in range(200)])
    assert torch.all(flipped ^ kept)
    assert 70 < int(flipped.sum()) < 130
