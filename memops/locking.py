"""One memops action at a time per state directory.

Two deploys (or a deploy and a restore) racing on the same stack would leave
it in a state neither intended; the second one is refused at once instead,
unless it asked to wait (``wait_s``: scheduled jobs do, through
``MEMOPS_LOCK_WAIT``): then it polls the lock until it is free or the time is up,
saying once whom it waits for, and gives up with LockBusyError naming the holder.

The lock is an flock, so a holder that dies releases it. Its file names the
holder while it runs and says ``finished`` when it ends: finding a holder's
name without ``finished`` means that action died part way (killed, or the
machine went down), and the next action says so (``previous_unfinished``).

A holder's child processes may act under its lock: the holder's file carries a
random token, exported as ``MEMOPS_LOCK_TOKEN`` while it holds the lock, and a
memops process started with that token (a backup task run on its host through
a playbook, by the task that holds the lock) proceeds instead of being refused;
the holder itself is still refused a second lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from memops.errors import Refused


class LockBusyError(Refused):
    """Another memops process holds the action lock of this state directory.

    ``holder`` names it (action and pid); ``waited_s`` is how long this one waited
    before it gave up (0: it was refused at once).
    """

    def __init__(self, message: str, *, holder: str, waited_s: float) -> None:
        super().__init__(message)
        self.holder = holder
        self.waited_s = waited_s


_FINISHED = " finished"
TOKEN_ENV = "MEMOPS_LOCK_TOKEN"
WAIT_ENV = "MEMOPS_LOCK_WAIT"  # read by the runner (memops.ops.runner), not here
# Polling a held lock: the first retry comes soon, later ones at most this far apart.
_FIRST_POLL_S = 0.05
_MAX_POLL_S = 0.5


@dataclass(frozen=True)
class Held:
    """The lock while it is held; ``previous_unfinished`` names an action that died holding it;
    ``waited_s`` is how long it took to get it."""

    previous_unfinished: str | None
    waited_s: float = 0.0
    inherited: bool = False  # held for us by the memops process that started this one


@contextlib.contextmanager
def action_lock(
    state_dir: Path,
    action: str,
    *,
    wait_s: float = 0.0,
    on_wait: Callable[[str], None] | None = None,
) -> Iterator[Held]:
    """Hold the stack lock of ``state_dir`` for ``action``.

    Held by another process: refused at once (LockBusyError) with ``wait_s`` 0, else
    retried until ``wait_s`` seconds have passed; ``on_wait`` is called once, with
    the holder's name, when the waiting starts.
    """
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = state_dir / "action.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        taken, waited = _acquire(fd, path, wait_s, on_wait)
        if not taken:
            yield Held(None, inherited=True)  # the process that started us holds it for us
            return
        previous = _read(fd).partition(" token ")[0]
        unfinished = previous if previous and not previous.endswith(_FINISHED) else None
        token = secrets.token_hex(8)
        _write(fd, f"{action} pid {os.getpid()} token {token}")
        outer = os.environ.get(TOKEN_ENV)
        os.environ[TOKEN_ENV] = token
        try:
            yield Held(unfinished, waited)
        finally:
            if outer is None:
                os.environ.pop(TOKEN_ENV, None)
            else:
                os.environ[TOKEN_ENV] = outer
            _write(fd, f"{action} pid {os.getpid()}{_FINISHED}")
    finally:
        os.close(fd)


def _acquire(
    fd: int, path: Path, wait_s: float, on_wait: Callable[[str], None] | None
) -> tuple[bool, float]:
    """(True, seconds waited) once this process holds the lock; (False, 0) when the
    process that started it holds it on its behalf (``MEMOPS_LOCK_TOKEN``)."""
    started = time.monotonic()
    deadline = started + max(wait_s, 0.0)
    pause = _FIRST_POLL_S
    announced = False
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True, time.monotonic() - started
        except BlockingIOError:
            pass
        recorded = _read(fd) or "unknown"
        inherited = os.environ.get(TOKEN_ENV)
        mine = f" pid {os.getpid()} "
        if inherited and recorded.endswith(f" token {inherited}") and mine not in recorded:
            return False, 0.0
        holder = recorded.partition(" token ")[0]
        left = deadline - time.monotonic()
        if left <= 0:
            waited = time.monotonic() - started
            if wait_s <= 0:
                message = (
                    f"another memops action holds {path} ({holder}); wait for it to finish "
                    f"(or set {WAIT_ENV}=SECONDS to wait for it)"
                )
            else:
                message = (
                    f"gave up after waiting {wait_s:g} s for {path}, held by {holder}; "
                    "this run did nothing"
                )
            raise LockBusyError(message, holder=holder, waited_s=waited)
        if not announced and on_wait is not None:
            on_wait(holder)
            announced = True
        time.sleep(min(pause, left))
        pause = min(pause * 2, _MAX_POLL_S)


def _read(fd: int) -> str:
    return os.pread(fd, 200, 0).decode("utf-8", "replace").strip()


def _write(fd: int, text: str) -> None:
    os.ftruncate(fd, 0)
    os.pwrite(fd, text.encode(), 0)
