"""One memops action at a time per state directory.

Two deploys (or a deploy and a restore) racing on the same stack would leave
it in a state neither intended; the second one is refused at once instead.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path


class LockBusyError(Exception):
    """Another memops process holds the action lock of this state directory."""


@contextlib.contextmanager
def action_lock(state_dir: Path, action: str) -> Iterator[None]:
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = state_dir / "action.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "unknown"
            raise LockBusyError(
                f"another memops action holds {path} ({holder}); wait for it to finish"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{action} pid {os.getpid()}".encode(), 0)
        yield
    finally:
        os.close(fd)
