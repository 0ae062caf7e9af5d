"""One memops action at a time per state directory.

Two deploys (or a deploy and a restore) racing on the same stack would leave
it in a state neither intended; the second one is refused at once instead.

The lock is an flock, so a holder that dies releases it. Its file names the
holder while it runs and says ``finished`` when it ends: finding a holder's
name without ``finished`` means that action died part way (killed, or the
machine went down), and the next action says so (``previous_unfinished``).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


class LockBusyError(Exception):
    """Another memops process holds the action lock of this state directory."""


_FINISHED = " finished"


@dataclass(frozen=True)
class Held:
    """The lock while it is held; ``previous_unfinished`` names an action that died holding it."""

    previous_unfinished: str | None


@contextlib.contextmanager
def action_lock(state_dir: Path, action: str) -> Iterator[Held]:
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = state_dir / "action.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read(fd) or "unknown"
            raise LockBusyError(
                f"another memops action holds {path} ({holder}); wait for it to finish"
            ) from None
        previous = _read(fd)
        unfinished = previous if previous and not previous.endswith(_FINISHED) else None
        _write(fd, f"{action} pid {os.getpid()}")
        try:
            yield Held(unfinished)
        finally:
            _write(fd, f"{action} pid {os.getpid()}{_FINISHED}")
    finally:
        os.close(fd)


def _read(fd: int) -> str:
    return os.pread(fd, 200, 0).decode("utf-8", "replace").strip()


def _write(fd: int, text: str) -> None:
    os.ftruncate(fd, 0)
    os.pwrite(fd, text.encode(), 0)
