"""The audit log: one JSON line per memops action (who, what, when, result).

Scheduled jobs and incident reviews read it to learn what memops did to a
stack. It lives in the inventory's state directory, mode 0600, append-only.
"""

from __future__ import annotations

import getpass
import json
import os
import socket
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

AUDIT_FILE = "audit.jsonl"


def append_audit(
    state_dir: Path,
    action: str,
    arguments: Mapping[str, Any],
    result: str,
    details: Mapping[str, Any] | None = None,
) -> None:
    """Append one line; ``arguments`` must not hold secrets (they never reach tasks' argv)."""
    record = {
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "user": _who(),
        "host": socket.gethostname(),
        "action": action,
        "arguments": dict(arguments),
        "result": result,
        **({"details": dict(details)} if details else {}),
    }
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    line = (json.dumps(record, sort_keys=True) + "\n").encode("utf-8")
    fd = os.open(state_dir / AUDIT_FILE, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line)  # one write per line keeps concurrent appends whole
    finally:
        os.close(fd)


def actor() -> str:
    """Who acts, as the audit tables name it: ``user@host``."""
    return f"{_who()}@{socket.gethostname()}"


def _who() -> str:
    try:
        return os.environ.get("SUDO_USER") or getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())
