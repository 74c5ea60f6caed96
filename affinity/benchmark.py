"""Throughput of a model against the machine's own matrix-multiply rate, measured side by side.

Absolute timings on a shared machine say little; ratios measured in one process do. So one
``benchmark`` call times, in interleaved repetitions whose order rotates (model step, GEMM,
timm's model; then GEMM, timm's, model; ...), the model, a 2048×2048 fp32 GEMM on the same
device and, when asked, timm's version of the model, and reports medians:

- ``ms_per_step`` / ``img_per_s``: one forward (``infer``, under ``inference_mode``) or one
  forward + backward + SGD step (``train``) on a batch;
- ``gmacs``: fvcore's multiply-adds of one forward of one image (``affinity.flops``);
- ``gemm_fraction``: the model's multiply-adds per second over the GEMM's, taken in each
  repetition (the model's time against the GEMM's beside it) and the median of those. A
  training step is counted as 3× the forward's multiply-adds (the forward and the two
  products of the backward);
- ``timm_ratio``: our step time over timm's, same batch, same settings, in each repetition;
  the median;
- ``*_p25`` / ``*_p75``: the quartiles of those per-repetition figures: how far a run's
  figure moves on a noisy machine;
- ``peak_memory_mb``: on CUDA ``torch.cuda.max_memory_allocated`` during one step, above
  what was allocated before it; on the CPU the peak of torch's own CPU allocations during
  one step, from ``torch.profiler``'s memory records (each op's own allocations less its
  frees, summed in call order: a peak inside one op is seen at that op's net; not the
  process RSS, not tracemalloc).

On the CPU the process keeps the memory a step frees for the next (``affinity.memory``), as
training, the search and ``affinity profile`` do: timm's model, timed in the same process,
runs under the same allocator settings.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor, nn

from affinity.memory import keep_freed_memory

__all__ = ["GEMM_SIDE", "TIMM_NAMES", "BenchmarkResult", "benchmark", "gemm_macs", "rotated", "timm_name"]

#: side of the square fp32 GEMM every model is compared with
GEMM_SIDE = 2048
#: our registered names -> timm's, for ``compare_timm``
TIMM_NAMES: dict[str, str] = {
    "deit_s": "deit_small_patch16_224",
    "resmlp_s12": "resmlp_12_224",
    "mixer_s16": "mixer_s16_224",
    "swin_t": "swin_tiny_patch4_window7_224",
}
MODES = ("infer", "train")
#: multiply-adds of a training step per forward multiply-add
TRAIN_MACS_FACTOR = 3


@dataclass
class BenchmarkResult:
    """One model at one batch size; the times are medians over interleaved repetitions."""

    model: str
    batch_size: int
    img_size: int
    mode: str
    device: str
    amp: bool
    channels_last: bool
    compiled: bool
    reparam: bool
    threads: int
    repeats: int
    ms_per_step: float
    img_per_s: float
    gmacs: float
    gemm_gmacs_per_s: float
    gemm_fraction: float
    gemm_fraction_p25: float
    gemm_fraction_p75: float
    peak_memory_mb: float
    memory_source: str
    timm_model: str | None
    timm_ms_per_step: float | None
    timm_ratio: float | None
    timm_ratio_p25: float | None
    timm_ratio_p75: float | None
    load_avg: float

    def row(self) -> dict[str, Any]:
        """The result as one flat row (CSV, JSON)."""
        return asdict(self)


def timm_name(model: str) -> str | None:
    """timm's name for a registered model, or None when timm has no counterpart here."""
    return TIMM_NAMES.get(model)


def gemm_macs(side: int = GEMM_SIDE) -> int:
    """Multiply-adds of one ``side``×``side`` by ``side``×``side`` product."""
    return side**3


def _gemm_step(device: torch.device) -> Callable[[], None]:
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(GEMM_SIDE, GEMM_SIDE, generator=gen).to(device)
    b = torch.randn(GEMM_SIDE, GEMM_SIDE, generator=gen).to(device)
    out = torch.empty(GEMM_SIDE, GEMM_SIDE, device=device)

    def step() -> None:
        torch.mm(a, b, out=out)

    return step


def _model_step(
    model: nn.Module, x: Tensor, *, mode: str, amp: bool, device: torch.device
) -> Callable[[], None]:
    """A closure running one step of ``model`` on ``x`` (inference or a training step)."""
    autocast: Callable[[], Any] = (
        (
            lambda: torch.autocast(
                device.type, dtype=torch.float16 if device.type == "cuda" else torch.bfloat16
            )
        )
        if amp
        else contextlib.nullcontext
    )
    if mode == "infer":
        model.eval()

        def infer() -> None:
            with torch.inference_mode(), autocast():
                model(x)

        return infer
    model.train()
    optim = torch.optim.SGD(model.parameters(), lr=1e-4)
    target = torch.zeros(x.shape[0], dtype=torch.long, device=device)

    def train() -> None:
        optim.zero_grad(set_to_none=True)
        with autocast():
            loss = nn.functional.cross_entropy(model(x), target)
        loss.backward()
        optim.step()

    return train


def quartiles(values: list[float]) -> tuple[float, float]:
    """The first and third quartiles of ``values`` (inclusive: within their range; one value
    is both)."""
    if len(values) == 1:
        return values[0], values[0]
    q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, q3


def rotated(keys: list[str], i: int) -> list[str]:
    """``keys`` rotated left by ``i``: over repetitions each step takes each place in the
    order, so none always runs right after the GEMM (whose operands flush the caches) or right
    after a model of the same shapes."""
    k = i % len(keys)
    return keys[k:] + keys[:k]


def _timed(step: Callable[[], None], device: torch.device) -> float:
    """Seconds of one call of ``step`` (CUDA synchronised on both sides)."""
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    step()
    if cuda:
        torch.cuda.synchronize(device)
    return time.perf_counter() - t0


def _peak_memory(step: Callable[[], None], device: torch.device) -> tuple[float, str]:
    """MiB allocated at the peak of one step above what was live before it, and the source."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        step()
        torch.cuda.synchronize(device)
        return (torch.cuda.max_memory_allocated(device) - before) / 2**20, "torch.cuda.max_memory_allocated"
    from torch.profiler import ProfilerActivity, profile

    with _without_profiler_lines(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    # each op's own allocations less its own frees (its children's are theirs), in call order
    deltas = sorted((ev.time_range.start, ev.self_cpu_memory_usage) for ev in prof.events())
    live = peak = 0
    for _, delta in deltas:
        live += delta
        peak = max(peak, live)
    return peak / 2**20, "torch.profiler CPU allocations"


@contextlib.contextmanager
def _without_profiler_lines() -> Iterator[None]:
    """Standard error (fd 2) through a temporary file while torch.profiler starts and stops.

    This torch build's kineto writes ``USDT: ... profiler_start`` and ``profiler_stop`` from C++
    to fd 2 (no log-level variable silences them), which ``--quiet`` must not show. Whatever
    else reaches fd 2 meanwhile is written back afterwards, in order.
    """
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no fd 2 to filter
        yield
        return
    with tempfile.TemporaryFile() as caught:
        os.dup2(caught.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            caught.seek(0)
            kept = [line for line in caught.read().splitlines(keepends=True) if not line.startswith(b"USDT:")]
            if kept:
                os.write(2, b"".join(kept))


@contextlib.contextmanager
def _threads(count: int | None) -> Iterator[int]:
    old = torch.get_num_threads()
    if count is not None:
        torch.set_num_threads(count)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(old)


def _prepare(model: nn.Module, x: Tensor, *, channels_last: bool, compiled: bool) -> tuple[nn.Module, Tensor]:
    if channels_last:
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        x = x.contiguous(memory_format=torch.channels_last)
    if compiled:
        model = torch.compile(model)  # type: ignore[assignment]
    return model, x


def benchmark(
    name: str,
    *,
    batch_size: int = 8,
    img_size: int = 224,
    mode: str = "infer",
    device: str | torch.device = "cpu",
    amp: bool = False,
    channels_last: bool = False,
    compiled: bool = False,
    reparam: bool = False,
    compare_timm: bool = False,
    repeats: int = 10,
    warmup: int = 2,
    threads: int | None = None,
    timm_factory: Callable[[str], nn.Module] | None = None,
) -> BenchmarkResult:
    """Time registered model ``name`` beside a 2048² fp32 GEMM (and timm's model) in one process.

    Args:
        name: a registered model name or a model-config YAML.
        mode: ``infer`` (forward under inference_mode) or ``train`` (forward, backward, SGD step).
        reparam: time (and count) the model's deploy form, ``model.reparameterize()`` (RepMLP's
            folds; no change for models without train-time branches), as timm's ``--reparam``.
        compare_timm: also time timm's counterpart (``TIMM_NAMES``); ``timm_factory`` builds it
            (given timm's name, in the form to time: reparameterised too with ``reparam``); the
            caller supplies it since timm is a benchmark-only import.
        repeats: interleaved timed repetitions after ``warmup`` untimed ones; medians reported.
        threads: torch's intra-op threads during the run (None: leave as is).
    """
    from affinity.errors import ConfigError, check_int
    from affinity.flops import count_flops
    from affinity.models import create_model

    check_int("batch_size", batch_size, 1)
    check_int("img_size", img_size, 1)
    check_int("repeats", repeats, 1)
    if mode not in MODES:
        raise ConfigError(f"mode={mode!r} is not allowed (allowed: {', '.join(MODES)})")
    dev = torch.device(device)
    other = timm_name(name) if compare_timm else None
    if compare_timm and other is None:
        raise ConfigError(f"model={name!r} has no timm counterpart (allowed: {', '.join(TIMM_NAMES)})")
    torch.manual_seed(0)
    model = create_model(name, img_size=img_size)
    if reparam:
        model.reparameterize()
    x = torch.randn(batch_size, model.in_chans, img_size, img_size)
    macs = count_flops(model, x[:1]).total
    model, x = model.to(dev), x.to(dev)
    if dev.type == "cpu":
        keep_freed_memory()  # as the search and profile do: steps reuse freed memory, not fresh pages
    with _threads(threads) as used:
        net, xin = _prepare(model, x, channels_last=channels_last, compiled=compiled)
        steps: dict[str, Callable[[], None]] = {
            "model": _model_step(net, xin, mode=mode, amp=amp, device=dev),
            "gemm": _gemm_step(dev),
        }
        if other is not None:
            assert timm_factory is not None, "compare_timm needs a timm_factory"
            theirs, tx = _prepare(
                timm_factory(other).to(dev), x, channels_last=channels_last, compiled=compiled
            )
            steps["timm"] = _model_step(theirs, tx, mode=mode, amp=amp, device=dev)
        for step in steps.values():
            for _ in range(warmup):
                step()
        times: dict[str, list[float]] = {key: [] for key in steps}
        for i in range(repeats):
            for key in rotated(list(steps), i):
                times[key].append(_timed(steps[key], dev))
        peak, source = _peak_memory(steps["model"], dev)
    med = {key: statistics.median(values) for key, values in times.items()}
    step_macs = macs * batch_size * (TRAIN_MACS_FACTOR if mode == "train" else 1)
    gemm_rate = gemm_macs() / med["gemm"]
    timm_s = med.get("timm")
    # each repetition's own figures: the model against the GEMM (and timm's) timed beside it
    fractions = [step_macs / t * g / gemm_macs() for t, g in zip(times["model"], times["gemm"])]
    ratios = [t / u for t, u in zip(times["model"], times.get("timm", []))]
    fraction_q, ratio_q = quartiles(fractions), quartiles(ratios) if ratios else (None, None)
    return BenchmarkResult(
        model=name,
        batch_size=batch_size,
        img_size=img_size,
        mode=mode,
        device=str(dev),
        amp=amp,
        channels_last=channels_last,
        compiled=compiled,
        reparam=reparam,
        threads=used,
        repeats=repeats,
        ms_per_step=med["model"] * 1e3,
        img_per_s=batch_size / med["model"],
        gmacs=macs / 1e9,
        gemm_gmacs_per_s=gemm_rate / 1e9,
        gemm_fraction=statistics.median(fractions),
        gemm_fraction_p25=fraction_q[0],
        gemm_fraction_p75=fraction_q[1],
        peak_memory_mb=peak,
        memory_source=source,
        timm_model=other,
        timm_ms_per_step=None if timm_s is None else timm_s * 1e3,
        timm_ratio=statistics.median(ratios) if ratios else None,
        timm_ratio_p25=ratio_q[0],
        timm_ratio_p75=ratio_q[1],
        load_avg=os.getloadavg()[0],
    )
