"""One memops action at a time per state directory.

Two deploys (or a deploy and a restore) racing on the same stack would leave
it in a state neither intended; the second one is refused at once instead.

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
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


class LockBusyError(Exception):
    """Another memops process holds the action lock of this state directory."""


_FINISHED = " finished"
TOKEN_ENV = "MEMOPS_LOCK_TOKEN"


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
            inherited = os.environ.get(TOKEN_ENV)
            mine = f" pid {os.getpid()} "
            if inherited and holder.endswith(f" token {inherited}") and mine not in holder:
                yield Held(None)  # the process that started us holds it for us
                return
            raise LockBusyError(
                f"another memops action holds {path} ({holder.partition(' token ')[0]}); "
                "wait for it to finish"
            ) from None
        previous = _read(fd).partition(" token ")[0]
        unfinished = previous if previous and not previous.endswith(_FINISHED) else None
        token = secrets.token_hex(8)
        _write(fd, f"{action} pid {os.getpid()} token {token}")
        outer = os.environ.get(TOKEN_ENV)
        os.environ[TOKEN_ENV] = token
        try:
            yield Held(unfinished)
        finally:
            if outer is None:
                os.environ.pop(TOKEN_ENV, None)
            else:
                os.environ[TOKEN_ENV] = outer
            _write(fd, f"{action} pid {os.getpid()}{_FINISHED}")
    finally:
        os.close(fd)


def _read(fd: int) -> str:
    return os.pread(fd, 200, 0).decode("utf-8", "replace").strip()


def _write(fd: int, text: str) -> None:
    os.ftruncate(fd, 0)
    os.pwrite(fd, text.encode(), 0)
