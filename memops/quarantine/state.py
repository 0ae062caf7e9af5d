"""The quarantine record: ``quarantine.json`` in the state directory, beside targets.json.

One entry per quarantined namespace (tenant): when, by whom, which tiers. The
deploy reads it (lookup ``memops_quarantine``) so that a re-deploy keeps every
quarantine; ``invoke health`` lists the namespaces. Mode 0600 like the rest.

``tiers`` lists only the tiers where the quarantine is in force: a quarantine adds
each tier once it is done there, a release removes it once it is released there.
``unfinished`` holds the tiers a quarantine or release has started on and not
done (yet, or because it failed there): tier -> {"action": "quarantine" |
"release", "started", "actor", "error" once it failed}. The run that is asked for
next does them again. A record without ``unfinished`` (every record of the
versions before it) is complete.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from memops.errors import Refused
from memops.files import write_private_atomic

QUARANTINE_FILE = "quarantine.json"
TIERS = ("redis", "postgresql", "qdrant")
UNFINISHED = "unfinished"


class QuarantineStateError(Refused):
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


def done_tiers(entry: dict[str, Any]) -> list[str]:
    """The tiers where the namespace is quarantined now."""
    return list(entry.get("tiers", ()))


def open_tiers(entry: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Tier -> the unfinished run there (its action, error): may be half done either way."""
    return {tier: dict(run) for tier, run in (entry.get(UNFINISHED) or {}).items()}


def unfinished(namespaces: dict[str, dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """Tenant -> its open tiers (``open_tiers``), for the tenants that have any, sorted."""
    found = {tenant: open_tiers(entry) for tenant, entry in sorted(namespaces.items())}
    return {tenant: tiers for tenant, tiers in found.items() if tiers}


def in_force(namespaces: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The entries quarantined in at least one tier (not one whose only tier failed)."""
    return {tenant: entry for tenant, entry in sorted(namespaces.items()) if done_tiers(entry)}
