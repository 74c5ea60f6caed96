"""Kill a worker in the middle of a trial, without a race.

Reading "trial N is RUNNING" and then sending SIGKILL leaves a window in which the worker
finishes trial N; the test then expects an interrupted trial that completed. Instead the worker
is stopped first (SIGSTOP: it can write nothing more), given a moment for anything it already
sent to reach the storage, and only then is the storage read: what is RUNNING now stays
unfinished once it is killed. When nothing suitable is running it is let go again (SIGCONT).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

SETTLE_S = 1.0  # for a write already on its way (socket buffer, server commit) to land


def kill_if(pid: int, pick: Callable[[], T | None], *, group: bool = False) -> T | None:
    """Stop ``pid`` (its process group with ``group``), then call ``pick``; SIGKILL it and
    return what ``pick`` returned when that is not None, else resume it and return None."""
    send = os.killpg if group else os.kill
    send(pid, signal.SIGSTOP)
    time.sleep(SETTLE_S)
    try:
        chosen = pick()
    except BaseException:
        send(pid, signal.SIGCONT)
        raise
    if chosen is None:
        send(pid, signal.SIGCONT)
        return None
    send(pid, signal.SIGKILL)
    return chosen
