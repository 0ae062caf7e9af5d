"""Qdrant part of a quarantine: the tenant's points move to collections the app does not use.

Qdrant's access control is per collection (JWT RBAC ``access`` claims; the payload
filters that could narrow a token to a tenant are deprecated since 1.16), so a
tenant inside a shared collection cannot be hidden in place. Quarantine moves the
tenant's points of every memory collection into its own collection
``memops-quarantine-<hash>`` (same vectors config and payload indexes): copy, check
every point's id, vector and payload digest, and only then delete them from the
source. Release moves them back the same way and drops the quarantine collection.
Nothing is lost on a failure half way: the points are in the source, the quarantine
collection, or both (ids are the same, so running it again converges).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from memops.backup.qdrant.tier import QdrantTier, point_digest
from memops.errors import Failed
from memops.memory.qdrant_points import tenant_selector
from memops.model import NAMESPACE_FIELD, QUARANTINE_PREFIX, quarantine_collection

if TYPE_CHECKING:
    from qdrant_client import QdrantClient


class QdrantQuarantineError(Failed):
    """A move did not check out: nothing more was deleted."""


def memory_collections(tier: QdrantTier) -> list[str]:
    return [name for name in tier.collections() if not name.startswith(QUARANTINE_PREFIX)]


def _points(tier: QdrantTier, collection: str, tenant: str) -> list[dict[str, Any]]:
    """The tenant's points in ``collection``; none when it does not exist (released already)."""
    if not tier.client.collection_exists(collection):
        return []
    found = tier.scroll(collection, [tenant])
    return sorted(
        (p for p in found if p["payload"].get(NAMESPACE_FIELD) == tenant),
        key=lambda p: str(p["id"]),
    )


def plan(tier: QdrantTier, tenant: str, moves: dict[str, str] | None) -> dict[str, int]:
    """Points per source collection that would move (quarantine: moves is None)."""
    if moves is None:
        counts = {c: len(_points(tier, c, tenant)) for c in memory_collections(tier)}
    else:
        counts = {c: len(_points(tier, q, tenant)) for c, q in moves.items()}
    return {c: n for c, n in counts.items() if n}


def arrived(
    tier: QdrantTier, tenant: str, moves: dict[str, str], *, half_done: bool = False
) -> dict[str, int]:
    """Points of the tenant in the source collections that the quarantine did not move there.

    The application's token (memops.deploy.qdrant_token) reaches the shared collections, and
    Qdrant cannot scope a token to a tenant inside one: points it wrote for the tenant
    during the quarantine are there. A release keeps them and reports them. When the
    tier is ``half_done`` (a quarantine or release stopped part way), a quarantine
    collection without the tenant's points was not filled yet, or was emptied back by
    that release (which reported them): its source's points are not new.
    """
    found = {}
    for source, dest in sorted(moves.items()):
        held = {str(p["id"]) for p in _points(tier, dest, tenant)}
        if half_done and not held:
            continue
        extra = [p for p in _points(tier, source, tenant) if str(p["id"]) not in held]
        if extra:
            found[source] = len(extra)
    return found


def written_since(client: QdrantClient, tenant: str, sources: Iterable[str]) -> dict[str, int]:
    """The tenant's points in the shared collections its quarantine emptied, by collection.

    The quarantine moved every point out, so each one found there was written since
    (what ``arrived`` lists at the release); a count per collection, cheap enough for
    every health cycle (the tenant index serves it).
    """
    found = {}
    for source in sorted(sources):
        if not client.collection_exists(source):
            continue
        count = client.count(source, count_filter=tenant_selector(tenant), exact=True).count
        if count:
            found[source] = count
    return found


def _move(tier: QdrantTier, source: str, dest: str, tenant: str) -> int:
    points = _points(tier, source, tenant)
    if not points:
        return 0
    tier._upsert(dest, points)
    copied = {point_digest(p) for p in _points(tier, dest, tenant)}
    missing = [p["id"] for p in points if point_digest(p) not in copied]
    if missing:
        raise QdrantQuarantineError(
            f"qdrant: {len(missing)} point(s) of {source!r} did not arrive intact in {dest!r} "
            f"(first: {missing[0]}); nothing deleted from {source!r}"
        )
    tier._delete_tenants(source, [tenant])
    return len(points)


def _same_layout(tier: QdrantTier, model: str, collection: str) -> None:
    """Create ``collection`` like ``model`` (vectors config, payload indexes) if missing."""
    if tier.client.collection_exists(collection):
        return
    info = tier._json("GET", f"/collections/{quote(model, safe='')}")
    header = {
        "vectors": info["config"]["params"]["vectors"],
        "payload_schema": {
            key: value.get("data_type") for key, value in (info.get("payload_schema") or {}).items()
        },
    }
    tier._recreate(collection, header)


def quarantine(tier: QdrantTier, tenant: str, collections: Sequence[str]) -> dict[str, str]:
    """Move the tenant's points out of ``collections``; returns source -> quarantine collection."""
    moves = {}
    for collection in collections:
        dest = quarantine_collection(collection, tenant)
        _same_layout(tier, collection, dest)
        _move(tier, collection, dest, tenant)
        moves[collection] = dest
    return moves


def release(tier: QdrantTier, tenant: str, moves: dict[str, str]) -> None:
    """Move the points back and drop the emptied quarantine collections."""
    for collection, dest in sorted(moves.items()):
        if not tier.client.collection_exists(dest):
            continue  # released already
        _same_layout(tier, dest, collection)  # a reindex may have made only the quarantine one
        _move(tier, dest, collection, tenant)
        if tier.client.count(dest, exact=True).count:
            raise QdrantQuarantineError(f"qdrant: {dest!r} is not empty after the release")
        tier.client.delete_collection(dest)
