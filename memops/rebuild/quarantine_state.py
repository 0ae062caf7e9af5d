"""The quarantine record: ``quarantine.json`` in the state directory, beside targets.json.

One entry per quarantined namespace (tenant): when, by whom, which tiers. The
deploy reads it (lookup ``memops_quarantine``) so that a re-deploy keeps every
quarantine; ``invoke health`` lists the namespaces. Mode 0600 like the rest.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from memops.files import write_private_atomic

QUARANTINE_FILE = "quarantine.json"
TIERS = ("redis", "postgresql", "qdrant")


class QuarantineStateError(Exception):
    """The record cannot be read: nothing is changed until it is repaired."""


def load(state_dir: Path) -> dict[str, dict[str, Any]]:
    """Quarantined namespaces: tenant -> {since, actor, tiers}; {} when none."""
    file = state_dir / QUARANTINE_FILE
    if not file.exists():
        return {}
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
        namespaces = data["namespaces"]
        if not isinstance(namespaces, dict):
            raise TypeError("namespaces is not an object")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise QuarantineStateError(f"{file}: unreadable quarantine record: {exc}") from None
    return {str(k): dict(v) for k, v in namespaces.items()}


def save(state_dir: Path, namespaces: dict[str, dict[str, Any]]) -> None:
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    document = {"namespaces": namespaces}
    write_private_atomic(
        state_dir / QUARANTINE_FILE, json.dumps(document, indent=2, sort_keys=True) + "\n"
    )


def tenants_in(namespaces: dict[str, dict[str, Any]], tier: str) -> list[str]:
    """The namespaces quarantined in ``tier``, sorted."""
    return sorted(t for t, entry in namespaces.items() if tier in entry.get("tiers", ()))
