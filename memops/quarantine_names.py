"""Where a quarantined tenant's Qdrant points live: ``memops-quarantine-<hash>`` collections.

One collection per (memory collection, tenant), named by a hash of both, so the
name is a literal whatever the tenant name holds and can be found again from the
pair. The backup tier (a namespace restore routes a quarantined tenant's points
there), the quarantine procedure and the application's token (which never grants
these names) share it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

QUARANTINE_PREFIX = "memops-quarantine-"


def quarantine_collection(collection: str, tenant: str) -> str:
    """The collection that holds ``tenant``'s points of ``collection`` while quarantined."""
    digest = hashlib.sha256(f"{collection}\0{tenant}".encode()).hexdigest()[:32]
    return QUARANTINE_PREFIX + digest


def is_quarantine_collection(name: str) -> bool:
    return name.startswith(QUARANTINE_PREFIX)


def source_collection(name: str, tenant: str, candidates: Iterable[str]) -> str | None:
    """The memory collection ``name`` stands for, for ``tenant``.

    A memory collection stands for itself; a quarantine collection for the
    candidate whose quarantine collection it is for this tenant, or None when it
    is another tenant's (or its source is unknown).
    """
    if not is_quarantine_collection(name):
        return name
    sources = (c for c in candidates if not is_quarantine_collection(c))
    return next((c for c in sources if quarantine_collection(c, tenant) == name), None)
