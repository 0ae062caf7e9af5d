"""What a destructive action is in the middle of, for the action after it if it dies.

The runner writes ``inflight.json`` in the state directory when a locked action
starts and removes it when the action returns, whatever its outcome. Before its
first destructive step an action records there how to put things back or finish
(``record_recovery``: a safety set and the command that restores from it). A
SIGKILL runs no cleanup, so the file stays: the next locked action names the dead
one, when it started, and what it recorded.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from memops.audit import append_audit
from memops.files import write_private_atomic

INFLIGHT_FILE = "inflight.json"


def begin(state_dir: Path, action: str, arguments: Mapping[str, Any]) -> None:
    record = {
        "action": action,
        "arguments": dict(arguments),
        "pid": os.getpid(),
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "recovery": [],
    }
    write_private_atomic(state_dir / INFLIGHT_FILE, json.dumps(record, sort_keys=True))


def record_recovery(state_dir: Path, line: str) -> None:
    """Add ``line`` (what to run if this action dies from here on) to the running record,
    and to the audit log as an ``in-progress`` line of the action."""
    record = left_behind(state_dir)
    if record is None or record.get("pid") != os.getpid():
        return  # not under the runner (a library call): nothing to add to
    record["recovery"] = [*record.get("recovery", []), line]
    write_private_atomic(state_dir / INFLIGHT_FILE, json.dumps(record, sort_keys=True))
    action, arguments = str(record["action"]), record.get("arguments") or {}
    append_audit(state_dir, action, arguments, "in-progress", {"recovery": line})


def end(state_dir: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        (state_dir / INFLIGHT_FILE).unlink()


def left_behind(state_dir: Path) -> dict[str, Any] | None:
    """The record of an action that started and never returned (None: there is none)."""
    try:
        record = json.loads((state_dir / INFLIGHT_FILE).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {"action": "unknown (inflight.json is unreadable)", "recovery": []}
    return record if isinstance(record, dict) else None


def describe(record: Mapping[str, Any]) -> str:
    """One line for the next action: which action died, when, and what it said to run."""
    started, pid = record.get("started_at", "?"), record.get("pid", "?")
    text = f"{record.get('action')} (started {started}, pid {pid})"
    recovery = [str(line) for line in record.get("recovery") or []]
    if recovery:
        text += "; it recorded: " + "; ".join(recovery)
    return text
