"""Models out: ONNX (``torch.onnx.export``, run back with onnxruntime) and TorchScript
(``torch.jit.trace``, run back with ``torch.jit.load``), each checked on a random input
against the PyTorch model it came from.

ONNX export in torch 2.13 goes through the dynamo exporter, which needs ``onnx`` and
``onnxscript``; checking the file needs ``onnxruntime`` (all three: ``pip install
'affinity[export]'``). A model that does not export fails with one line naming the op.
"""

from __future__ import annotations

import re
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from affinity.errors import AffinityError, ConfigError

FORMATS = ("onnx", "torchscript")
#: weights above this many bytes go to ONNX's external-data file beside the graph
_ONNX_INLINE_MAX = 1_800_000_000
#: file suffix per format
SUFFIXES = {"onnx": ".onnx", "torchscript": ".torchscript.pt"}


class ExportError(AffinityError):
    """A model that the chosen format cannot express (the message names the op)."""


@dataclass(frozen=True)
class ExportResult:
    """One export and its check.

    Attributes:
        model: the model's name.
        format: ``onnx`` or ``torchscript``.
        path: the file written.
        size_bytes: its size (with the external-data file of a model over 1.8 GB).
        img_size: the input side it was exported at (batch 1, the model's channels).
        max_abs_diff: max |exported − PyTorch| over the logits of one random input; None when
            the exported file could not be run (``runtime`` says why).
        runtime: what ran the exported file.
        export_s: seconds to export and write.
        check_s: seconds to load and run the exported file once.
    """

    model: str
    format: str
    path: Path
    size_bytes: int
    img_size: int
    max_abs_diff: float | None
    runtime: str
    export_s: float
    check_s: float

    def line(self) -> str:
        diff = "not checked" if self.max_abs_diff is None else f"max |diff| {self.max_abs_diff:.2e}"
        return (
            f"{self.path}: {self.format}, {self.size_bytes / 1e6:.1f} MB, {diff} vs PyTorch "
            f"({self.runtime}), export {self.export_s:.1f} s, check {self.check_s:.2f} s, "
            f"input 1×{self.img_size}²"
        )


def export_model(model: nn.Module, path: str | Path, fmt: str, *, seed: int = 0) -> ExportResult:
    """Export ``model`` (an ``AffinityNet``: its ``img_size`` and ``in_chans`` fix the input)
    to ``path`` as ``fmt``, run the file on a seeded random input and compare with PyTorch.

    Raises:
        ConfigError: an unknown format, or the packages the format needs are missing.
        ExportError: the model has an op the format cannot express (named).
    """
    if fmt not in FORMATS:
        raise ConfigError(f"--format={fmt!r} is not allowed: one of {', '.join(FORMATS)}")
    model = model.eval()
    size, chans = int(getattr(model, "img_size", 224)), int(getattr(model, "in_chans", 3))
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(1, chans, size, size, generator=gen)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        expected = model(x)
    start = time.perf_counter()
    if fmt == "onnx":
        _export_onnx(model, x, path)
    else:
        _export_torchscript(model, x, path)
    export_s = time.perf_counter() - start
    start = time.perf_counter()
    got, runtime = _run_onnx(path, x) if fmt == "onnx" else _run_torchscript(path, x)
    check_s = time.perf_counter() - start
    diff = None if got is None else float((got - expected).abs().max())
    return ExportResult(
        model=str(getattr(model, "name", "custom")),
        format=fmt,
        path=path,
        size_bytes=sum(p.stat().st_size for p in written_files(path)),
        img_size=size,
        max_abs_diff=diff,
        runtime=runtime,
        export_s=export_s,
        check_s=check_s,
    )


def written_files(path: Path) -> list[Path]:
    """The file an export wrote and, for a large ONNX model, its external-data file."""
    data = path.with_name(path.name + ".data")
    return [path, data] if data.is_file() else [path]


def _export_onnx(model: nn.Module, x: torch.Tensor, path: Path) -> None:
    import importlib.util

    missing = [m for m in ("onnx", "onnxscript") if importlib.util.find_spec(m) is None]
    if missing:
        raise ConfigError(
            f"--format=onnx needs {' and '.join(missing)} (torch's ONNX exporter): "
            "pip install 'affinity[export]'"
        )
    import logging

    quiet = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "onnxscript")]
    levels = [lg.level for lg in quiet]
    try:
        for lg in quiet:
            lg.setLevel(logging.ERROR)
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            # one self-contained file unless the weights pass protobuf's 2 GB limit
            big = sum(t.numel() * t.element_size() for t in model.state_dict().values()) > _ONNX_INLINE_MAX
            torch.onnx.export(model, (x,), str(path), dynamo=True, verbose=False, external_data=big)
    except Exception as exc:
        raise ExportError(
            f"{getattr(model, 'name', 'model')} does not export to ONNX: {_op_of(exc)}"
        ) from None
    finally:
        for lg, level in zip(quiet, levels):
            lg.setLevel(level)


def _export_torchscript(model: nn.Module, x: torch.Tensor, path: Path) -> None:
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # trace warnings: the model's shape checks become constants
            traced = torch.jit.trace(model, (x,), check_trace=False)
    except Exception as exc:
        raise ExportError(
            f"{getattr(model, 'name', 'model')} does not trace to TorchScript: {_op_of(exc)}"
        ) from None
    from affinity._io import atomic_write

    atomic_write(path, lambda tmp: torch.jit.save(traced, str(tmp)))


def _run_onnx(path: Path, x: torch.Tensor) -> tuple[torch.Tensor | None, str]:
    try:
        import onnxruntime as ort
    except ImportError:
        return None, "onnxruntime not installed: pip install 'affinity[export]'"
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    return torch.from_numpy(out), f"onnxruntime {ort.__version__}"


def _run_torchscript(path: Path, x: torch.Tensor) -> tuple[torch.Tensor | None, str]:
    loaded = torch.jit.load(str(path), map_location="cpu")
    with torch.no_grad():
        return loaded(x), "torch.jit.load"


_OP = re.compile(r"(aten[.:]+[A-Za-z_0-9.]+)")


def _op_of(exc: BaseException) -> str:
    """The op an exporter failed on, from the innermost cause that names one, on one line."""
    chain: list[BaseException] = []
    seen: BaseException | None = exc
    while seen is not None and len(chain) < 20:
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    op = next((m.group(1) for e in chain for m in [_OP.search(str(e))] if m), None)
    root = chain[-1]
    reason = (str(root).strip().splitlines() or [type(root).__name__])[0][:200]
    return f"op {op}: {reason}" if op else reason
