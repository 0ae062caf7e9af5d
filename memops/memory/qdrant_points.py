"""A namespace's points in Qdrant: reading and writing them, the filter that picks them.

Every procedure that touches one tenant's points goes through ``tenant_selector``:
the payload's ``tenant_id`` must match exactly (a literal, never a pattern), so an
id that another tenant's point happens to carry is never touched.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from memops.model import NAMESPACE_FIELD

if TYPE_CHECKING:
    from qdrant_client import QdrantClient


def tenant_selector(tenant: str, ids: Iterable[Any] | None = None) -> Any:
    """A filter for the tenant's points (only those ``ids`` when given)."""
    from qdrant_client import models

    must: list[Any] = [
        models.FieldCondition(key=NAMESPACE_FIELD, match=models.MatchValue(value=tenant))
    ]
    if ids is not None:
        must.insert(0, models.HasIdCondition(has_id=[str(i) for i in ids]))
    return models.Filter(must=must)


def collection_names(client: QdrantClient) -> list[str]:
    return sorted(c.name for c in client.get_collections().collections)


def delete_tenant_points(
    client: QdrantClient, tenant: str, by_collection: Mapping[str, Sequence[Any]]
) -> int:
    """Delete the tenant's points with these ids, per collection; how many there were."""
    from qdrant_client import models

    removed = 0
    for collection, ids in sorted(by_collection.items()):
        if not ids:
            continue
        selector = tenant_selector(tenant, ids)
        found = client.count(collection, count_filter=selector, exact=True).count
        if found:
            client.delete(
                collection, points_selector=models.FilterSelector(filter=selector), wait=True
            )
            removed += found
    return removed


@dataclass(frozen=True)
class QdrantPoint:
    """The semantic-memory point of an indexed, live memory item (same id)."""

    id: str
    kind: str
    vector: tuple[float, ...]
    payload: dict[str, Any] = field(hash=False)


def upsert_points(client: QdrantClient, collection: str, points: Sequence[QdrantPoint]) -> None:
    """Upsert ``points`` (id, vector, payload) in one request, waiting until applied."""
    from qdrant_client import models

    client.upsert(
        collection,
        points=[
            models.PointStruct(id=p.id, vector=list(p.vector), payload=dict(p.payload))
            for p in points
        ],
        wait=True,
    )


def ensure_collection(client: QdrantClient, collection: str, vector_dim: int) -> bool:
    """Create a memory collection (DOT distance, a keyword index on the namespace) if missing.

    True when it was created.
    """
    from qdrant_client import models

    if client.collection_exists(collection):
        return False
    client.create_collection(
        collection,
        vectors_config=models.VectorParams(size=vector_dim, distance=models.Distance.DOT),
    )
    client.create_payload_index(collection, NAMESPACE_FIELD, models.PayloadSchemaType.KEYWORD)
    return True


def read_qdrant(
    client: QdrantClient, collection: str, tenants: Collection[str], *, kind: str | None = None
) -> dict[str, QdrantPoint]:
    """The points of ``tenants`` (and ``kind``) in ``collection``, by id."""
    from qdrant_client import models

    must: list[models.Condition] = [
        models.FieldCondition(key=NAMESPACE_FIELD, match=models.MatchAny(any=list(tenants)))
    ]
    if kind is not None:
        must.append(models.FieldCondition(key="kind", match=models.MatchValue(value=kind)))
    result: dict[str, QdrantPoint] = {}
    for records in scroll_pages(client, collection, models.Filter(must=must)):
        result.update((str(record.id), point_from_record(record)) for record in records)
    return result


def point_from_record(record: Any) -> QdrantPoint:
    """A Record from the client as a QdrantPoint (unnamed dense vector only)."""
    payload = dict(record.payload or {})
    vector = record.vector if isinstance(record.vector, list) else []
    return QdrantPoint(
        id=str(record.id),
        kind=str(payload.get("kind", "")),
        vector=tuple(float(x) for x in vector),
        payload=payload,
    )


def scroll_pages(
    client: QdrantClient, collection: str, scroll_filter: Any = None, *, page: int = 256
) -> Iterator[list[Any]]:
    """Every point of ``collection`` that ``scroll_filter`` takes, a page of records at a time
    (payloads and vectors included)."""
    offset: Any = None
    while True:
        records, offset = client.scroll(
            collection,
            scroll_filter=scroll_filter,
            limit=page,
            offset=offset,
            with_payload=True,
            with_vectors=True,
        )
        yield records
        if offset is None:
            return
