"""Fault points: named places between two data-changing steps where tests kill memops.

``MEMOPS_KILL_AT=name`` (or ``name:N``, the N-th time it is reached) makes the process
SIGKILL itself there: no ``finally``, no ``atexit``, exactly what a kill -9 or a lost
machine leaves. The fault suite (tests/test_fault_suite.py) kills each destructive
procedure at each of its points and checks what is left and that a re-run finishes
the job. Unset (always, outside those tests), a point costs one dictionary lookup.
"""

from __future__ import annotations

import os
import signal
from collections import Counter

KILL_ENV = "MEMOPS_KILL_AT"
_reached: Counter[str] = Counter()


def point(name: str) -> None:
    """Die here when the fault tests ask for it."""
    wanted = os.environ.get(KILL_ENV)
    if not wanted:
        return
    target, _, nth = wanted.partition(":")
    if target != name:
        return
    _reached[name] += 1
    if _reached[name] >= int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)
