"""The file formats, each from small files the tests write: npz, CIFAR pickles, image folders."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from affinity.data import load_dataset
from affinity.errors import DataError

RNG = np.random.default_rng(0)


# -- npz ---------------------------------------------------------------------------------------


def test_npz_uint8_grey_with_stratified_split(tmp_path: Path) -> None:
    x = RNG.integers(0, 256, (40, 12, 12), dtype=np.uint8)
    np.savez(tmp_path / "d.npz", x=x, y=np.arange(40) % 4)
    d = load_dataset(f"npz:{tmp_path / 'd.npz'}")
    assert (d.num_classes, d.in_chans, d.img_size, len(d.train), len(d.val)) == (4, 1, 12, 32, 8)
    assert d.train.x.dtype == torch.uint8
    assert d.mean[0] == pytest.approx(float(d.train.x.double().mean()) / 255, abs=1e-9)
    assert d.mean[0] != pytest.approx(float(d.val.x.double().mean()) / 255, abs=1e-3)


def test_npz_float_rgb_with_its_own_val_and_names(tmp_path: Path) -> None:
    np.savez(
        tmp_path / "d.npz",
        x=RNG.random((10, 8, 8, 3), dtype=np.float32),
        y=np.array([0, 1, 2] * 3 + [0]),
        x_val=RNG.random((4, 8, 8, 3), dtype=np.float32),
        y_val=np.array([0, 1, 2, 2]),
        class_names=np.array(["cat", "dog", "emu"]),
    )
    d = load_dataset(f"npz:{tmp_path / 'd.npz'}", img_size=16)
    assert (d.num_classes, d.in_chans, d.img_size, len(d.train), len(d.val)) == (3, 3, 16, 10, 4)
    assert d.class_names == ["cat", "dog", "emu"]
    assert d.val.x.shape == (4, 3, 16, 16)


@pytest.mark.parametrize(
    ("arrays", "match"),
    [
        ({"x": np.zeros((4, 8, 8)), "y": np.array([0, 1, -1, 0])}, r"label -1 is out of range"),
        (
            {"x": np.zeros((4, 8, 8)), "y": np.array([0, 1, 3, 0]), "class_names": np.array(["a", "b"])},
            r"label 3 is out of range; expected 0 \.\. 1",
        ),
        ({"x": np.zeros((4, 8, 8)), "y": np.array([0.5, 1, 1, 0])}, "expected integer class indices"),
        ({"images": np.zeros((4, 8, 8)), "y": np.array([0, 1, 1, 0])}, r"no array 'x' \(has images, y\)"),
        ({"x": np.zeros((4, 8, 8)), "y": np.array([0, 1, 1])}, "x has 4 images but y has 3 labels"),
        ({"x": np.zeros((4, 8)), "y": np.array([0, 1, 1, 0])}, r"expected \(N, H, W\) or \(N, H, W, C\)"),
        ({"x": np.zeros((4, 8, 6)), "y": np.array([0, 1, 1, 0])}, "expected square images"),
    ],
)
def test_npz_bad_layouts_name_the_file(tmp_path: Path, arrays: dict, match: str) -> None:
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(DataError, match=match) as err:
        load_dataset(f"npz:{path}")
    assert str(path) in str(err.value)


def test_npz_missing_and_corrupt(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such file"):
        load_dataset(f"npz:{tmp_path / 'nope.npz'}")
    with pytest.raises(DataError, match="needs a path"):
        load_dataset("npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError, match=r"not a readable \.npz"):
        load_dataset(f"npz:{tmp_path / 'junk.npz'}")


# -- CIFAR -------------------------------------------------------------------------------------


def _batch(n: int, label_key: bytes, classes: int) -> dict:
    return {
        b"data": RNG.integers(0, 256, (n, 3072), dtype=np.uint8),
        label_key: list(RNG.integers(0, classes, n)),
    }


def write_cifar10(root: Path, n: int = 6) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name in [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]:
        (root / name).write_bytes(pickle.dumps(_batch(n, b"labels", 10)))
    (root / "batches.meta").write_bytes(pickle.dumps({b"label_names": [f"c{i}".encode() for i in range(10)]}))
    return root


def test_cifar10_batches(tmp_path: Path) -> None:
    root = write_cifar10(tmp_path / "cifar-10-batches-py")
    first = pickle.loads((root / "data_batch_1").read_bytes())
    d = load_dataset(f"cifar10:{tmp_path}")  # the parent folder of the archive's folder works too
    assert (d.num_classes, d.in_chans, d.img_size, len(d.train), len(d.val)) == (10, 3, 32, 30, 6)
    assert d.class_names == [f"c{i}" for i in range(10)]
    assert d.flip
    # row layout: 1024 red, 1024 green, 1024 blue
    assert torch.equal(d.train.x[0, 1].flatten(), torch.from_numpy(first[b"data"][0, 1024:2048]))
    assert d.train.y[0] == first[b"labels"][0]


def test_cifar100_fine_labels_and_resize(tmp_path: Path) -> None:
    for name in ("train", "test"):
        batch = _batch(8, b"fine_labels", 100)
        batch[b"coarse_labels"] = [0] * 8
        (tmp_path / name).write_bytes(pickle.dumps(batch))
    d = load_dataset(f"cifar100:{tmp_path}", img_size=16)
    assert (d.num_classes, d.img_size, len(d.train), len(d.val)) == (100, 16, 8, 8)
    assert d.train.x.dtype == torch.uint8


def test_cifar_wrong_layouts(tmp_path: Path) -> None:
    root = write_cifar10(tmp_path / "c")
    (root / "data_batch_3").write_bytes(pickle.dumps([1, 2, 3]))
    with pytest.raises(DataError, match=r"data_batch_3: holds a list; expected a dict"):
        load_dataset(f"cifar10:{root}")
    (root / "data_batch_3").write_bytes(
        pickle.dumps({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]})
    )
    with pytest.raises(
        DataError, match=r"data_batch_3: 'data' is uint8 \(2, 100\); expected uint8 \(N, 3072\)"
    ):
        load_dataset(f"cifar10:{root}")
    (root / "data_batch_3").write_bytes(
        pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]})
    )
    with pytest.raises(
        DataError, match=r"data_batch_3 'labels': label 10 is out of range; expected 0 \.\. 9"
    ):
        load_dataset(f"cifar10:{root}")
    (root / "data_batch_3").write_bytes(pickle.dumps({b"data": np.zeros((2, 3072), np.uint8)}))
    with pytest.raises(DataError, match="no 'labels' entry"):
        load_dataset(f"cifar10:{root}")
    (root / "data_batch_3").unlink()
    with pytest.raises(DataError, match="missing data_batch_3"):
        load_dataset(f"cifar10:{root}")


def test_cifar_pickle_cannot_run_code(tmp_path: Path) -> None:
    root = write_cifar10(tmp_path / "c")

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    (root / "test_batch").write_bytes(pickle.dumps({b"data": Evil()}))
    with pytest.raises(DataError, match=r"refusing to load builtins\.print"):
        load_dataset(f"cifar10:{root}")


# -- image folders -----------------------------------------------------------------------------


def write_images(
    root: Path, classes: dict[str, int], mode: str = "RGB", size: tuple[int, int] = (20, 14)
) -> None:
    for name, count in classes.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
            Image.fromarray(RNG.integers(0, 256, shape, dtype=np.uint8), mode).save(root / name / f"{i}.png")


def test_imagefolder_split_rgb(tmp_path: Path) -> None:
    write_images(tmp_path / "imgs", {"b_dog": 5, "a_cat": 5})
    (tmp_path / "imgs" / "a_cat" / "notes.txt").write_text("not an image")
    d = load_dataset(f"imagefolder:{tmp_path / 'imgs'}", img_size=16)
    assert d.class_names == ["a_cat", "b_dog"]
    assert (d.num_classes, d.in_chans, d.img_size, len(d.train), len(d.val)) == (2, 3, 16, 8, 2)
    assert torch.bincount(d.val.y).tolist() == [1, 1]


def test_imagefolder_train_val_layout_grey(tmp_path: Path) -> None:
    write_images(tmp_path / "train", {"x": 3, "y": 2}, mode="L")
    write_images(tmp_path / "val", {"x": 1, "y": 1}, mode="L")
    d = load_dataset(f"imagefolder:{tmp_path}")
    assert (d.in_chans, d.img_size, len(d.train), len(d.val)) == (1, 32, 5, 2)


def test_imagefolder_bad_inputs(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such file"):
        load_dataset(f"imagefolder:{tmp_path / 'missing'}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no class subfolders"):
        load_dataset(f"imagefolder:{tmp_path / 'empty'}")
    (tmp_path / "empty" / "cls").mkdir()
    with pytest.raises(DataError, match=r"cls: class folder holds no images"):
        load_dataset(f"imagefolder:{tmp_path / 'empty'}")
    write_images(tmp_path / "imgs", {"a": 2, "b": 2})
    (tmp_path / "imgs" / "b" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(DataError, match=r"broken\.png: not a readable image"):
        load_dataset(f"imagefolder:{tmp_path / 'imgs'}")
