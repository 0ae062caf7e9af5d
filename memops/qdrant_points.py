"""A tenant's points in Qdrant: the filter that picks them, and deleting them by id.

Every procedure that touches one tenant's points goes through ``tenant_selector``:
the payload's ``tenant_id`` must match exactly (a literal, never a pattern), so an
id that another tenant's point happens to carry is never touched.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from memops.backup.qdrant_tier import TENANT_FIELD

if TYPE_CHECKING:
    from qdrant_client import QdrantClient


def tenant_selector(tenant: str, ids: Iterable[Any] | None = None) -> Any:
    """A filter for the tenant's points (only those ``ids`` when given)."""
    from qdrant_client import models

    must: list[Any] = [
        models.FieldCondition(key=TENANT_FIELD, match=models.MatchValue(value=tenant))
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
