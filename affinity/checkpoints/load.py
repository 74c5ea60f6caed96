"""Loading a checkpoint into a model: detect the layout, convert, load, report by name."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import nn

from affinity.checkpoints.convert import Format, convert, detect, fill
from affinity.checkpoints.formats import FORMATS
from affinity.checkpoints.io import RawCheckpoint
from affinity.errors import ConfigError

#: how many names a one-line report lists before "... and N more"
_SHOWN = 6
#: the classifier's keys, reset (not loaded) when the model has another class count
HEAD_KEYS = ("head.weight", "head.bias")


@dataclass
class LoadReport:
    """What loading a checkpoint did.

    Attributes:
        path: the file.
        format: the detected layout (``affinity.checkpoints.FORMATS``).
        loaded: tensors loaded.
        missing: model keys the checkpoint did not provide.
        unexpected: checkpoint keys the model has no place for (source names).
        mismatched: ``key (from source key): source shape -> model shape``.
        dropped: source keys dropped on purpose (buffers the model recomputes).
        head_reset: the classifier was left freshly initialised (another class count).
    """

    path: str
    format: str
    loaded: int = 0
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    head_reset: bool = False

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def problem(self) -> str:
        """The problems on one line ('' when none)."""
        parts = []
        for label, names in (
            ("missing keys", self.missing),
            ("unexpected keys", self.unexpected),
            ("shape mismatches", self.mismatched),
        ):
            if names:
                more = f" ... and {len(names) - _SHOWN} more" if len(names) > _SHOWN else ""
                parts.append(f"{len(names)} {label}: {', '.join(names[:_SHOWN])}{more}")
        return "; ".join(parts)

    def summary(self) -> str:
        """One line: what was loaded from where."""
        extra = " (classifier reset for the new class count)" if self.head_reset else ""
        return f"{self.path}: {self.loaded} tensors loaded from a {self.format} checkpoint{extra}"


def detect_format(raw: RawCheckpoint) -> Format:
    """The layout of ``raw`` (ConfigError naming the known layouts when none fits)."""
    return detect(FORMATS, list(raw.state_dict), str(raw.path))


def adapt_overrides(fmt: Format, cfg: Any, raw: RawCheckpoint) -> dict[str, Any]:
    """The architecture overrides the source layout implies for ``cfg`` (see ``Format.adapt``)."""
    return {} if fmt.adapt is None else fmt.adapt(cfg, raw.state_dict)


def source_num_classes(fmt: Format, raw: RawCheckpoint) -> int | None:
    """The checkpoint's class count: its metadata's, else its classifier's rows."""
    n = raw.meta.get("num_classes")
    if isinstance(n, int):
        return n
    for key, tensor in raw.state_dict.items():
        found = fmt.rename(key)
        if found is None or not found[0].targets:
            continue
        r, m = found
        if any(fill(t, m) == "head.weight" for t, _ in r.targets):
            return int(tensor.shape[0])
    return None


def load_into(
    model: nn.Module, raw: RawCheckpoint, fmt: Format, *, strict: bool = True, reset_head: bool = False
) -> LoadReport:
    """Convert ``raw`` and load it into ``model``.

    Args:
        model: the model, built with the architecture the checkpoint was trained with.
        raw: the checkpoint.
        fmt: its layout.
        strict: raise ``ConfigError`` (one line naming the keys) on any missing, unexpected
            or mismatched tensor; else load what fits and report the rest.
        reset_head: leave the classifier as initialised (fine-tuning to another class count).
    """
    own = model.state_dict()
    shapes = {k: tuple(v.shape) for k, v in own.items()}
    conv = convert(fmt, raw.state_dict, shapes)
    report = LoadReport(str(raw.path), fmt.name, dropped=conv.dropped, head_reset=reset_head)
    report.unexpected = list(conv.unexpected)
    report.mismatched = list(conv.mismatched)
    if reset_head:
        report.mismatched = [m for m in report.mismatched if not m.startswith(HEAD_KEYS)]
    state = {}
    for key, value in conv.state_dict.items():
        if reset_head and key in HEAD_KEYS:
            continue
        if key not in own:
            report.unexpected.append(conv.sources.get(key, key))
            continue
        state[key] = value
    done = set(state) | {m.split(" ", 1)[0] for m in report.mismatched}
    report.missing = [
        k
        for k in own
        if k not in done
        and not k.endswith("num_batches_tracked")  # older BatchNorm checkpoints lack the counter
        and not (reset_head and k in HEAD_KEYS)
    ]
    if strict and not report.ok:
        raise ConfigError(f"{raw.path} ({fmt.name} layout) does not fit the model: {report.problem()}")
    model.load_state_dict(state, strict=False)
    report.loaded = len(state)
    return report
