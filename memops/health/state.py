"""Health state kept across runs in the state directory.

``state.json`` holds the streak counters and timestamps (rewritten atomically,
mode 0600); ``runtime-events.jsonl`` gets one JSON line per health cycle.
Callers wrap read-modify-write in ``state_lock`` so that two concurrent
``invoke health`` runs cannot lose each other's update.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from memops.errors import Refused
from memops.files import write_private_atomic

STATE_FILE = "state.json"
EVENTS_FILE = "runtime-events.jsonl"
# A separate lock file: state.json itself is replaced on every write, so a lock
# held on it would guard an inode that is about to disappear.
LOCK_FILE = ".health.lock"


class HealthStateError(Refused):
    """state.json exists but cannot be used."""


@dataclass(frozen=True)
class StoredState:
    health_state: str = "unknown"  # stack state of the last cycle
    failure_streak: int = 0  # consecutive failed cycles
    last_cycle_failed: bool = False
    queue_depth: int = 0  # components whose failure carries over to the next cycle
    last_checked_at: str | None = None
    last_healthy_at: str | None = None
    last_failure_at: str | None = None
    component_failure_streaks: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str) -> StoredState:
        """Build from parsed JSON; unknown keys are ignored, wrong types are errors."""
        expected: dict[str, type | tuple[type, ...]] = {
            "health_state": str,
            "failure_streak": int,
            "last_cycle_failed": bool,
            "queue_depth": int,
            "last_checked_at": (str, type(None)),
            "last_healthy_at": (str, type(None)),
            "last_failure_at": (str, type(None)),
            "component_failure_streaks": dict,
        }
        values = {}
        for item in fields(cls):
            if item.name not in data:
                continue
            value = data[item.name]
            if not isinstance(value, expected[item.name]):
                raise HealthStateError(f"{source}: {item.name}: unexpected type")
            values[item.name] = value
        streaks = values.get("component_failure_streaks", {})
        if not all(isinstance(n, int) and not isinstance(n, bool) for n in streaks.values()):
            raise HealthStateError(f"{source}: component_failure_streaks: expected integers")
        return cls(**values)


def load_state(state_dir: str | os.PathLike[str]) -> StoredState:
    """The stored state, or a fresh one when no health cycle has run yet."""
    path = Path(state_dir) / STATE_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return StoredState()
    except (OSError, ValueError) as exc:
        raise HealthStateError(
            f"{path}: unreadable ({exc}); move it aside to reset the health streaks"
        ) from None
    if not isinstance(data, dict):
        raise HealthStateError(f"{path}: expected a JSON object")
    return StoredState.from_dict(data, str(path))


def save_state(state_dir: str | os.PathLike[str], state: StoredState) -> None:
    text = json.dumps(state.to_dict(), indent=2, sort_keys=True) + "\n"
    write_private_atomic(Path(state_dir) / STATE_FILE, text)


def append_event(state_dir: str | os.PathLike[str], event: Mapping[str, Any]) -> None:
    """Append one JSON line to runtime-events.jsonl (created with mode 0600)."""
    line = (json.dumps(event, sort_keys=True) + "\n").encode("utf-8")
    path = Path(state_dir) / EVENTS_FILE
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line)  # one write of one line: O_APPEND keeps lines whole
    finally:
        os.close(fd)


@contextlib.contextmanager
def state_lock(state_dir: str | os.PathLike[str]) -> Iterator[Path]:
    """Hold an exclusive lock on the state directory's health files.

    Creates the directory (mode 0700) if needed and yields its path.
    """
    directory = Path(state_dir)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield directory
    finally:
        os.close(fd)  # closing releases the lock
