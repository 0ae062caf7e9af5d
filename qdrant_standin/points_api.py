"""Point endpoints: upsert, retrieve, delete, scroll, count, query and the legacy search."""

from __future__ import annotations

import uuid
from typing import Any

from pydantic import BaseModel
from qdrant_client.http import models

from qdrant_standin.access import WRITE
from qdrant_standin.context import Context
from qdrant_standin.protocol import Request, bad_request, not_found, update_result
from qdrant_standin.router import Route


class NamedVector(BaseModel, extra="forbid"):
    name: str
    vector: list[float] | models.SparseVector


class SearchRequest(BaseModel, extra="forbid"):
    """``POST .../points/search``: gone from Qdrant's current OpenAPI document, still served."""

    vector: list[float] | NamedVector
    filter: models.Filter | None = None
    params: models.SearchParams | None = None
    limit: int
    offset: int | None = None
    with_payload: models.WithPayloadInterface | None = None
    with_vector: models.WithVector | None = None
    score_threshold: float | None = None
    shard_key: models.ShardKeySelector | None = None


def upsert_points(ctx: Context, request: Request) -> dict[str, Any]:
    operation = request.model(models.PointInsertOperations)
    operation_id = ctx.store.upsert(request.params["name"], operation)
    return update_result(operation_id, request.query_bool("wait", False))


def delete_points(ctx: Context, request: Request) -> dict[str, Any]:
    selector = request.model(models.PointsSelector)
    operation_id = ctx.store.delete_points(request.params["name"], selector)
    return update_result(operation_id, request.query_bool("wait", False))


def retrieve_points(ctx: Context, request: Request) -> list[dict[str, Any]]:
    body = request.model(models.PointRequest)
    with_payload = body.with_payload if body.with_payload is not None else True
    with_vector = body.with_vector if body.with_vector is not None else False
    return ctx.store.retrieve(request.params["name"], body.ids, with_payload, with_vector)


def get_point(ctx: Context, request: Request) -> dict[str, Any]:
    point_id = _point_id(request.params["id"])
    found = ctx.store.retrieve(request.params["name"], [point_id], True, True)
    if not found:
        raise not_found(f"No point with id {point_id} found")
    return found[0]


def scroll_points(ctx: Context, request: Request) -> dict[str, Any]:
    return ctx.store.scroll(request.params["name"], request.model(models.ScrollRequest))


def count_points(ctx: Context, request: Request) -> dict[str, Any]:
    return ctx.store.count(request.params["name"], request.model(models.CountRequest))


def query_points(ctx: Context, request: Request) -> dict[str, Any]:
    query = request.model(models.QueryRequest)
    return {"points": ctx.store.query(request.params["name"], query)}


def search_points(ctx: Context, request: Request) -> list[dict[str, Any]]:
    search = request.model(SearchRequest)
    vector = search.vector
    query = models.QueryRequest(
        query=vector.vector if isinstance(vector, NamedVector) else vector,
        using=vector.name if isinstance(vector, NamedVector) else None,
        filter=search.filter,
        params=search.params,
        limit=search.limit,
        offset=search.offset,
        with_payload=search.with_payload,
        with_vector=search.with_vector,
        score_threshold=search.score_threshold,
    )
    return ctx.store.query(request.params["name"], query)


def _point_id(text: str) -> int | str:
    """A path's point id: an unsigned integer or a UUID, as in ExtendedPointId."""
    if text.isdigit():
        return int(text)
    try:
        return str(uuid.UUID(text))
    except ValueError:
        raise bad_request(f"point id {text!r} is neither an unsigned integer nor a UUID") from None


ROUTES = [
    Route("PUT", "/collections/{name}/points", upsert_points, WRITE),
    Route("POST", "/collections/{name}/points", retrieve_points),
    Route("POST", "/collections/{name}/points/delete", delete_points, WRITE),
    Route("POST", "/collections/{name}/points/scroll", scroll_points),
    Route("POST", "/collections/{name}/points/count", count_points),
    Route("POST", "/collections/{name}/points/query", query_points),
    Route("POST", "/collections/{name}/points/search", search_points),
    Route("GET", "/collections/{name}/points/{id}", get_point),
]
