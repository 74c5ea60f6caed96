"""What produced a study: versions, platform, device and the project's git commit.

Recorded once, when the study is created, as the study user attribute ``provenance``;
``affinity leaderboard --format json`` and ``affinity report`` show it. A trial's val
accuracy is exact on the CPU for the same versions, CPU and thread count; a resume under
different versions is told what changed (``changed``).
"""

from __future__ import annotations

import platform
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import optuna

__all__ = ["ATTR", "changed", "collect", "describe", "git_commit", "record"]

#: the study user attribute that holds it
ATTR = "provenance"
#: the keys compared on resume (the rest describe the machine, which may change freely)
VERSIONS = ("affinity", "torch", "optuna", "fvcore", "python")


def git_commit(path: Path | None = None) -> str | None:
    """The commit of the git work tree that holds affinity's source (``+dirty`` when tracked
    files changed), or None when affinity does not run from a checkout (an installed wheel,
    or a package folder git does not track)."""
    package = path or Path(__file__).resolve().parents[1]

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", "-C", str(package.parent), *args], capture_output=True, text=True,
                                 timeout=10, check=False)  # fmt: skip
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    # a venv inside some other repository must not report that repository's commit
    if git("ls-files", "--error-unmatch", f"{package.name}/__init__.py") is None:
        return None
    commit = git("rev-parse", "HEAD")
    if not commit:
        return None
    dirty = git("status", "--porcelain", "--untracked-files=no", "--", package.name)
    return f"{commit}+dirty" if dirty else commit


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def collect(device: str) -> dict[str, Any]:
    """The provenance of work run now on ``device`` (``cpu`` or ``cuda``): versions of affinity,
    torch, optuna, fvcore and python, the platform, the CPU, the device (the GPU's name on
    CUDA) and the git commit (None outside a checkout)."""
    from importlib.metadata import PackageNotFoundError, version

    import optuna
    import torch

    import affinity

    try:
        fvcore = version("fvcore")
    except PackageNotFoundError:
        fvcore = None
    dev = device
    if device.startswith("cuda") and torch.cuda.is_available():
        dev = f"{device} ({torch.cuda.get_device_name(torch.device(device))}, CUDA {torch.version.cuda})"
    return {
        "affinity": affinity.__version__,
        "torch": torch.__version__,
        "optuna": optuna.__version__,
        "fvcore": fvcore,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": _cpu(),
        "device": dev,
        "git_commit": git_commit(),
    }


def changed(recorded: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """``key: old -> new`` for each version that differs between two provenances."""
    return [f"{k}: {recorded.get(k)} -> {now.get(k)}" for k in VERSIONS if recorded.get(k) != now.get(k)]


def record(study: optuna.Study, device: str) -> list[str]:
    """Record the provenance on ``study`` when it has none (a new study); on a resumed one,
    leave it and return what changed since (see ``changed``)."""
    now = collect(device)
    recorded = study.user_attrs.get(ATTR)
    if not isinstance(recorded, dict):
        study.set_user_attr(ATTR, now)
        return []
    return changed(recorded, now)


def describe(recorded: dict[str, Any] | None) -> str:
    """One line: ``affinity 0.1.0, torch 2.13.0, ... on cpu (Linux-...), git abc1234``."""
    if not isinstance(recorded, dict):
        return "provenance: not recorded (a study from before affinity recorded it)"
    versions = ", ".join(f"{k} {recorded.get(k)}" for k in VERSIONS)
    commit = recorded.get("git_commit") or "no git checkout"
    return f"{versions}; {recorded.get('device')} on {recorded.get('platform')}; git {commit}"
