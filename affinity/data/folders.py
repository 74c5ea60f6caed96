"""Image folders (``imagefolder:PATH``) and numpy archives (``npz:PATH``).

``imagefolder:PATH``: one subfolder per class, named by the class (sorted names give labels
0, 1, ...), images in any format Pillow reads. If ``PATH`` holds ``train/`` and ``val/`` (or
``test/``) folders laid out that way, those are the splits; otherwise a stratified split.
Images are resized so the shorter side is ``img_size`` (default 32), then centre-cropped to a
square. A set whose images are all single-channel loads as one channel, otherwise RGB.

``npz:PATH``: a ``numpy.savez`` archive with ``x`` (N, H, W) or (N, H, W, C), uint8 (0-255)
or float (taken as [0, 1]), and ``y`` (N,) integer labels from 0. Optional: ``x_val`` and
``y_val`` (the validation split; otherwise a stratified split) and ``class_names`` (then every
label must be below its length).
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from affinity.data.base import (
    DatasetSplits,
    TensorSplit,
    check_labels,
    register_dataset,
    require_path,
    resize,
    splits_from_arrays,
    to_nchw,
)
from affinity.errors import DataError

IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
DEFAULT_SIZE = 32
_GREY_MODES = {"1", "L", "LA", "I", "I;16", "F", "P;L"}


def _class_dirs(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def _images(folder: Path) -> list[Path]:
    return sorted(
        p
        for p in folder.rglob("*")
        if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")
    )


def _nchw(x: np.ndarray, *, grey: bool) -> torch.Tensor:
    """(N, H, W, 3) uint8 -> (N, C, H, W), keeping one channel for an all-grey set."""
    x = x[..., :1] if grey else x
    return torch.from_numpy(np.ascontiguousarray(x)).permute(0, 3, 1, 2).contiguous()


def _read(path: Path, size: int) -> tuple[np.ndarray, bool]:
    """One image as (size, size, 3) uint8, and whether it was single-channel."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as src:
            src.load()
            grey = src.mode in _GREY_MODES
            im = src.convert("RGB")
            w, h = im.size
            scale = size / min(w, h)
            nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
            im = im.resize((nw, nh), Image.Resampling.BILINEAR)
            left, top = (nw - size) // 2, (nh - size) // 2
            im = im.crop((left, top, left + size, top + size))
            return np.asarray(im, dtype=np.uint8), grey
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise DataError(f"{path}: not a readable image ({exc}); expected a file Pillow can open") from None


def _read_tree(
    root: Path, classes: list[str] | None, size: int
) -> tuple[list[str], np.ndarray, np.ndarray, bool]:
    dirs = _class_dirs(root)
    if not dirs:
        raise DataError(f"{root}: no class subfolders; imagefolder expects PATH/<class>/<image files>")
    names = [d.name for d in dirs]
    if classes is not None and names != classes:
        raise DataError(f"{root}: class folders {names} differ from the train split's {classes}")
    xs: list[np.ndarray] = []
    ys: list[int] = []
    grey = True
    for label, d in enumerate(dirs):
        files = _images(d)
        if not files:
            raise DataError(
                f"{d}: class folder holds no images; expected files ending in "
                f"{', '.join(sorted(IMAGE_EXTENSIONS))}"
            )
        for f in files:
            img, g = _read(f, size)
            grey &= g
            xs.append(img)
            ys.append(label)
    return names, np.stack(xs), np.asarray(ys, dtype=np.int64), grey


@register_dataset("imagefolder")
def load_imagefolder(
    arg: str | None, *, img_size: int | None, seed: int, val_fraction: float
) -> DatasetSplits:
    """Images under ``PATH/<class>/`` (or ``PATH/train|val/<class>/``), read with Pillow.

    Args:
        arg: the folder.
        img_size: square side (shorter side resize, then centre crop); default 32.
        seed: fixes the split when the folder has no val/ of its own.
        val_fraction: share of each class held out when the folder has no val/.
    """
    root = require_path(arg, "imagefolder", "one subfolder of images per class")
    if not root.is_dir():
        raise DataError(f"{root}: not a folder; imagefolder expects PATH/<class>/<image files>")
    size = img_size or DEFAULT_SIZE
    val_dir = next((root / n for n in ("val", "test") if (root / n).is_dir()), None)
    common: dict[str, Any] = {
        "img_size": size,
        "name": "imagefolder",
        "flip": True,
        "crop_pad": max(1, size // 8),
    }
    if (root / "train").is_dir() and val_dir is not None:
        names, xt, yt, gt = _read_tree(root / "train", None, size)
        _, xv, yv, gv = _read_tree(val_dir, names, size)
        xtt = _nchw(xt, grey=gt and gv)
        return DatasetSplits(
            train=TensorSplit(xtt, torch.from_numpy(yt), 1 / 255),
            val=TensorSplit(_nchw(xv, grey=gt and gv), torch.from_numpy(yv), 1 / 255),
            num_classes=len(names),
            in_chans=xtt.shape[1],
            class_names=names,
            **common,
        )
    names, x, y, grey = _read_tree(root, None, size)
    if len(names) < 2:
        raise DataError(f"{root}: one class folder ({names[0]}); expected at least two classes")
    xt_all = (
        torch.from_numpy(np.ascontiguousarray(x[..., :1] if grey else x)).permute(0, 3, 1, 2).contiguous()
    )
    return splits_from_arrays(
        xt_all,
        y,
        scale=1 / 255,
        num_classes=len(names),
        seed=seed,
        val_fraction=val_fraction,
        class_names=names,
        **common,
    )


def _npz_images(x: np.ndarray, source: str, size: int | None) -> tuple[torch.Tensor, float]:
    if x.ndim in (3, 4) and (x.shape[1] != x.shape[2]) and size is None:
        raise DataError(
            f"{source}: images are {x.shape[1]}×{x.shape[2]}; expected square images, or pass img_size"
        )
    t = to_nchw(x, source)
    scale = 1 / 255 if t.dtype == torch.uint8 else 1.0
    if t.dtype != torch.uint8 and t.numel() and (not torch.isfinite(t).all()):
        raise DataError(f"{source}: images hold NaN or infinite values; expected finite numbers")
    if size is not None:
        t = resize(t, size)
    return t, scale


@register_dataset("npz")
def load_npz(arg: str | None, *, img_size: int | None, seed: int, val_fraction: float) -> DatasetSplits:
    """Arrays ``x`` and ``y`` (optionally ``x_val``, ``y_val``, ``class_names``) from ``PATH``.

    Args:
        arg: the ``.npz`` file.
        img_size: side to resize to (default: the stored size; required for non-square images).
        seed: fixes the split when the archive has no x_val.
        val_fraction: share of each class held out when the archive has no x_val.
    """
    path = require_path(arg, "npz", "a numpy .npz archive with arrays x and y")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {k: archive[k] for k in archive.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(f"{path}: not a readable .npz archive ({exc}); expected numpy.savez output") from None
    for key in ("x", "y"):
        if key not in arrays:
            raise DataError(
                f"{path}: no array {key!r} (has {', '.join(sorted(arrays)) or 'none'}); "
                "expected x (N, H, W[, C]) and y (N,)"
            )
    names = [str(n) for n in arrays["class_names"]] if "class_names" in arrays else None
    limit = len(names) if names is not None else None
    y = check_labels(arrays["y"], f"{path} 'y'", limit)
    if len(y) != len(arrays["x"]):
        raise DataError(f"{path}: x has {len(arrays['x'])} images but y has {len(y)} labels; expected equal")
    x, scale = _npz_images(arrays["x"], f"{path} 'x'", img_size)
    size = x.shape[-1]
    has_val = "x_val" in arrays or "y_val" in arrays
    if has_val:
        if "x_val" not in arrays or "y_val" not in arrays:
            raise DataError(f"{path}: x_val and y_val come together; found only one of them")
        yv = check_labels(arrays["y_val"], f"{path} 'y_val'", limit)
        xv, scale_v = _npz_images(arrays["x_val"], f"{path} 'x_val'", size)
        if len(yv) != len(xv):
            raise DataError(f"{path}: x_val has {len(xv)} images but y_val has {len(yv)}; expected equal")
        if xv.shape[1] != x.shape[1] or scale_v != scale:
            raise DataError(
                f"{path}: x_val ({xv.dtype}, {xv.shape[1]} channels) differs from x; expected alike"
            )
    num_classes = (
        limit if limit is not None else int(max(y.max(initial=-1), yv.max(initial=-1) if has_val else -1)) + 1
    )
    if num_classes < 2:
        raise DataError(f"{path}: labels cover {num_classes} class; expected at least two classes")
    common: dict[str, Any] = {
        "name": "npz",
        "class_names": names,
        "flip": False,
        "crop_pad": max(1, size // 16),
    }
    if has_val:
        return DatasetSplits(
            train=TensorSplit(x, torch.from_numpy(y), scale),
            val=TensorSplit(xv, torch.from_numpy(yv), scale),
            num_classes=num_classes,
            in_chans=x.shape[1],
            img_size=size,
            **common,
        )
    return splits_from_arrays(
        x,
        y,
        scale=scale,
        num_classes=num_classes,
        img_size=size,
        seed=seed,
        val_fraction=val_fraction,
        **common,
    )
