"""Qdrant's REST query, scroll and count bodies -> qdrant-edge requests.

Supported queries: nearest (dense, sparse or multi vector, or a point id, whose
stored vector is used and which is left out of the results, as Qdrant does with
the ids a query references),
order_by, fusion (RRF, DBSF) over prefetches, and random sampling. Recommend,
discover, context, formula and relevance-feedback queries, ``lookup_from`` and
inference objects are refused with a 400 that says so.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

import qdrant_edge as edge
from qdrant_client.http import models

from qdrant_standin.edge_filters import edge_filter
from qdrant_standin.edge_points import point_id, vector, with_payload, with_vector
from qdrant_standin.protocol import wrong_input

DEFAULT_LIMIT = 10
DEFAULT_RRF_K = 2  # Qdrant's default k for reciprocal rank fusion
VectorLookup = Callable[[Any, str | None], Any]  # (point id, vector name) -> stored vector


def scroll_request(rest: models.ScrollRequest) -> edge.ScrollRequest:
    order_by = rest.order_by
    return edge.ScrollRequest(
        offset=point_id(rest.offset) if rest.offset is not None else None,
        limit=rest.limit if rest.limit is not None else DEFAULT_LIMIT,
        filter=edge_filter(rest.filter),
        with_payload=with_payload(rest.with_payload, True),
        with_vector=with_vector(rest.with_vector, False),
        order_by=_order_by(order_by) if order_by is not None else None,
    )


def count_request(rest: models.CountRequest) -> edge.CountRequest:
    return edge.CountRequest(exact=True, filter=edge_filter(rest.filter))


def query_request(rest: models.QueryRequest, lookup: VectorLookup) -> edge.QueryRequest:
    if rest.lookup_from is not None:
        raise wrong_input("lookup_from is not supported by the stand-in")
    query, excluded = _query(rest.query, rest.using, lookup)
    return edge.QueryRequest(
        limit=rest.limit if rest.limit is not None else DEFAULT_LIMIT,
        offset=rest.offset,
        query=query,
        prefetches=_prefetches(rest.prefetch, lookup),
        with_vector=with_vector(rest.with_vector, False),
        with_payload=with_payload(rest.with_payload, False),
        filter=_excluding(rest.filter, excluded),
        score_threshold=rest.score_threshold,
        params=_params(rest.params),
    )


def _prefetches(rest: Any, lookup: VectorLookup) -> list[edge.Prefetch] | None:
    if rest is None:
        return None
    items = rest if isinstance(rest, list) else [rest]
    out = []
    for item in items:
        if item.lookup_from is not None:
            raise wrong_input("lookup_from is not supported by the stand-in")
        query, excluded = _query(item.query, item.using, lookup)
        out.append(
            edge.Prefetch(
                limit=item.limit if item.limit is not None else DEFAULT_LIMIT,
                query=query,
                prefetches=_prefetches(item.prefetch, lookup),
                params=_params(item.params),
                filter=_excluding(item.filter, excluded),
                score_threshold=item.score_threshold,
            )
        )
    return out


def _query(rest: Any, using: str | None, lookup: VectorLookup) -> tuple[Any, list[Any]]:
    """(edge query, point ids to leave out of the results)."""
    if rest is None:
        return None, []
    if isinstance(rest, models.NearestQuery):
        if rest.mmr is not None:
            raise wrong_input("mmr is not supported by the stand-in")
        rest = rest.nearest
    if isinstance(rest, list | models.SparseVector):
        return edge.Query.Nearest(vector(rest), using), []
    if isinstance(rest, int | str | uuid.UUID):
        stored_id = point_id(rest)
        return edge.Query.Nearest(lookup(stored_id, using), using), [stored_id]
    if isinstance(rest, models.OrderByQuery):
        return _order_by(rest.order_by), []
    if isinstance(rest, models.FusionQuery):
        if rest.fusion == models.Fusion.RRF:
            return edge.Fusion.Rrf(DEFAULT_RRF_K), []
        return edge.Fusion.Dbsf(), []
    if isinstance(rest, models.RrfQuery):
        k = rest.rrf.k if rest.rrf.k is not None else DEFAULT_RRF_K
        return edge.Fusion.Rrf(k, rest.rrf.weights), []
    if isinstance(rest, models.SampleQuery):
        return edge.Sample.Random, []
    raise wrong_input(f"{type(rest).__name__} queries are not supported by the stand-in")


def _order_by(rest: str | models.OrderBy) -> edge.OrderBy:
    if isinstance(rest, str):
        return edge.OrderBy(rest)
    direction = {
        models.Direction.ASC: edge.Direction.Asc,
        models.Direction.DESC: edge.Direction.Desc,
    }
    start = rest.start_from
    if isinstance(start, datetime):
        start = start.isoformat()
    return edge.OrderBy(rest.key, direction=direction.get(rest.direction), start_from=start)


def _params(rest: models.SearchParams | None) -> edge.SearchParams | None:
    if rest is None:
        return None
    return edge.SearchParams(
        hnsw_ef=rest.hnsw_ef, exact=bool(rest.exact), indexed_only=bool(rest.indexed_only)
    )


def _excluding(rest: models.Filter | None, ids: list[Any]) -> edge.Filter | None:
    converted = edge_filter(rest)
    if not ids:
        return converted
    must = [converted] if converted is not None else []
    return edge.Filter(must=must or None, must_not=[edge.HasIdCondition(set(ids))])
