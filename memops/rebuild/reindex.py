"""Rebuild one namespace's Qdrant points from the embeddings kept in ``memory_items``.

The episodic tier keeps a copy of every vector, so the semantic tier can always be
rebuilt from it. A row has a point when it is live and indexed (``deleted_at`` NULL,
``indexed_at`` set, an embedding kept: the rows ``backup.cross_tier`` expects a
point for), with the row's id, the workload's payload (``point_payload``) and the
embedding as vector, in its kind's collection (``per_kind``: ``memory_{kind}``,
one collection per memory kind as the design has it).

The plan compares what the collections hold for the tenant (scrolled with an exact
``tenant_id`` match, plus the wanted ids fetched by id) with what the rows want:
points to create (missing), to update (payload or vector differ at float32
precision, or the payload names another tenant) and, with ``prune`` (the default),
to delete: the tenant's points in those collections that no such row wants (rows
deleted or anonymized since, or a point filed under another kind). Dry run returns
the plan; otherwise it is applied: upserts in batches, then deletes.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from memops.errors import Failed
from memops.memory.qdrant_points import QdrantPoint, ensure_collection, read_qdrant, upsert_points
from memops.model import SOURCE_KINDS, point_payload
from memops.progress import meter

if TYPE_CHECKING:
    import psycopg
    from qdrant_client import QdrantClient

UPSERT_BATCH = 256

_ROWS = """
SELECT id::text, source_kind, embedding FROM memory_items
WHERE tenant_id = %s AND indexed_at IS NOT NULL AND deleted_at IS NULL AND embedding IS NOT NULL
ORDER BY id
"""


class ReindexError(Failed):
    """The rows cannot be indexed as asked (a vector size the collection does not take)."""


def per_kind(kind: str) -> str:
    """The collection of a memory kind: ``memory_{kind}``."""
    return f"memory_{kind}"


@dataclass(frozen=True)
class CollectionPlan:
    """What changes in one collection: ids to upsert (created or updated) and to delete."""

    create: tuple[QdrantPoint, ...] = ()
    update: tuple[QdrantPoint, ...] = ()
    delete: tuple[str, ...] = ()
    unchanged: int = 0


@dataclass(frozen=True)
class ReindexResult:
    """Counts of a reindex (or of its dry run), in total and by collection."""

    tenant: str
    rows: int  # live indexed rows with an embedding
    created: int
    updated: int
    deleted: int
    unchanged: int
    collections: dict[str, dict[str, int]]
    dry_run: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "tenant": self.tenant,
            "rows": self.rows,
            "created": self.created,
            "updated": self.updated,
            "deleted": self.deleted,
            "unchanged": self.unchanged,
            "collections": self.collections,
            "dry_run": self.dry_run,
        }


@dataclass(frozen=True)
class ReindexPlan:
    """What a reindex of one tenant changes, per collection; applied as planned."""

    tenant: str
    rows: int
    plans: dict[str, CollectionPlan]

    def result(self, *, dry_run: bool) -> ReindexResult:
        plans = self.plans
        by_collection = {
            name: {
                "create": len(plan.create),
                "update": len(plan.update),
                "delete": len(plan.delete),
                "unchanged": plan.unchanged,
            }
            for name, plan in plans.items()
            if plan.create or plan.update or plan.delete or plan.unchanged
        }
        return ReindexResult(
            tenant=self.tenant,
            rows=self.rows,
            created=sum(len(p.create) for p in plans.values()),
            updated=sum(len(p.update) for p in plans.values()),
            deleted=sum(len(p.delete) for p in plans.values()),
            unchanged=sum(p.unchanged for p in plans.values()),
            collections=by_collection,
            dry_run=dry_run,
        )


def plan_reindex(
    conn: psycopg.Connection[Any],
    client: QdrantClient,
    tenant: str,
    *,
    collection_for: Callable[[str], str] = per_kind,
    prune: bool = True,
) -> ReindexPlan:
    """Compare ``tenant``'s points with its live indexed rows; nothing is written.

    ReindexError when a vector does not fit its collection.
    """
    wanted = wanted_points(conn, tenant)
    by_name: dict[str, list[QdrantPoint]] = {
        collection_for(kind): [] for kind in {*SOURCE_KINDS, *(p.kind for p in wanted)}
    }
    for point in wanted:
        by_name[collection_for(point.kind)].append(point)
    _refuse_other_sizes(client, by_name)
    plans = {
        name: _plan(client, name, tenant, points, prune=prune)
        for name, points in sorted(by_name.items())
    }
    return ReindexPlan(tenant, len(wanted), plans)


def apply_reindex(client: QdrantClient, plan: ReindexPlan) -> ReindexResult:
    """Write the plan: upserts in batches, then deletes.

    Other tenants' points are never written nor deleted: every delete is of an id
    scrolled under an exact ``tenant_id`` match, every upsert of a row of this tenant.
    """
    _apply(client, plan.tenant, plan.plans)
    return plan.result(dry_run=False)


def reindex_namespace(
    conn: psycopg.Connection[Any],
    client: QdrantClient,
    tenant: str,
    *,
    dry_run: bool = False,
    **how: Any,
) -> ReindexResult:
    """Make ``tenant``'s points equal to its live indexed rows (plan, then apply).

    ``how``: plan_reindex's ``collection_for`` and ``prune``.
    """
    plan = plan_reindex(conn, client, tenant, **how)
    return plan.result(dry_run=True) if dry_run else apply_reindex(client, plan)


def wanted_points(conn: psycopg.Connection[Any], tenant: str) -> list[QdrantPoint]:
    """The point every live indexed row of ``tenant`` should have (id, kind, vector, payload)."""
    with conn.cursor() as cur:
        cur.execute(_ROWS, (tenant,))
        rows = cur.fetchall()
    return [
        QdrantPoint(
            id=row_id,
            kind=kind,
            vector=_float32s(embedding),
            payload=point_payload(tenant, kind, row_id),
        )
        for row_id, kind, embedding in rows
    ]


def _float32s(values: Iterable[float]) -> tuple[float, ...]:
    """``real[]`` values as the float32 each names (Qdrant stores float32 too)."""
    values = list(values)
    return struct.unpack(f"<{len(values)}f", struct.pack(f"<{len(values)}f", *values))


def _refuse_other_sizes(client: QdrantClient, by_name: dict[str, list[QdrantPoint]]) -> None:
    """ReindexError, before anything is written, when a vector does not fit its collection."""
    from qdrant_client import models

    for name, points in by_name.items():
        found = {len(point.vector) for point in points}
        if len(found) > 1:
            raise ReindexError(f"rows for {name!r} hold embeddings of sizes {sorted(found)}")
        if not found or not client.collection_exists(name):
            continue
        params = client.get_collection(name).config.params.vectors
        if isinstance(params, models.VectorParams) and params.size not in found:
            raise ReindexError(
                f"collection {name!r} takes vectors of size {params.size}, the rows hold "
                f"{found.pop()}; nothing was changed"
            )


def _plan(
    client: QdrantClient,
    collection: str,
    tenant: str,
    points: Sequence[QdrantPoint],
    *,
    prune: bool,
) -> CollectionPlan:
    mine = {point.id: point for point in points}
    if not client.collection_exists(collection):
        return CollectionPlan(create=tuple(mine.values()))
    held = {
        point_id: (point.payload, point.vector)
        for point_id, point in read_qdrant(client, collection, [tenant]).items()
    }
    strays = [point_id for point_id in mine if point_id not in held]
    for record in client.retrieve(collection, strays, with_payload=True, with_vectors=True):
        vector = cast(list[float], record.vector if isinstance(record.vector, list) else [])
        held[str(record.id)] = (dict(record.payload or {}), tuple(vector))  # one dense vector
    create, update, unchanged = [], [], 0
    for point_id, point in mine.items():
        if point_id not in held:
            create.append(point)
        elif not _same(point, held[point_id]):
            update.append(point)
        else:
            unchanged += 1
    delete = tuple(sorted(i for i in held if i not in mine)) if prune else ()
    return CollectionPlan(tuple(create), tuple(update), delete, unchanged)


def _same(point: QdrantPoint, held: tuple[dict[str, Any], Sequence[float]]) -> bool:
    payload, vector = held
    return payload == point.payload and _float32s(vector) == point.vector


def _apply(
    client: QdrantClient,
    tenant: str,
    plans: dict[str, CollectionPlan],
) -> None:
    from qdrant_client import models

    with meter().count(f"qdrant reindex {tenant!r}", "points") as counter:
        for name, plan in plans.items():
            upserts = [*plan.create, *plan.update]
            if upserts:
                ensure_collection(client, name, len(upserts[0].vector))
            for start in range(0, len(upserts), UPSERT_BATCH):
                chunk = upserts[start : start + UPSERT_BATCH]
                upsert_points(client, name, chunk)
                counter.advance(len(chunk))
            if plan.delete:
                client.delete(
                    name, points_selector=models.PointIdsList(points=list(plan.delete)), wait=True
                )
                counter.advance(len(plan.delete))
