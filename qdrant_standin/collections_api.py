"""Collection endpoints: list, create, get, delete, exists, payload indexes."""

from __future__ import annotations

from typing import Any

from qdrant_client.http import models

from qdrant_standin.access import LIST, MANAGE, WRITE
from qdrant_standin.context import Context
from qdrant_standin.protocol import Request, update_result, wrong_input
from qdrant_standin.router import Route


def list_collections(ctx: Context, request: Request) -> dict[str, Any]:
    names = request.grant.visible(ctx.store.names())
    return {"collections": [{"name": name} for name in names]}


def get_collection(ctx: Context, request: Request) -> dict[str, Any]:
    return ctx.store.info(request.params["name"])


def create_collection(ctx: Context, request: Request) -> bool:
    config = request.model(models.CreateCollection)
    ctx.store.create(request.params["name"], config)
    return True


def delete_collection(ctx: Context, request: Request) -> bool:
    return ctx.store.delete(request.params["name"])


def collection_exists(ctx: Context, request: Request) -> dict[str, bool]:
    return {"exists": ctx.store.exists(request.params["name"])}


def create_index(ctx: Context, request: Request) -> dict[str, Any]:
    body = request.model(models.CreateFieldIndex)
    if body.field_schema is None:
        raise wrong_input("field_schema is required to create a payload index")
    raw_schema = request.json()["field_schema"]
    operation = ctx.store.set_index(request.params["name"], body.field_name, raw_schema)
    return update_result(operation, request.query_bool("wait", False))


def delete_index(ctx: Context, request: Request) -> dict[str, Any]:
    params = request.params
    operation = ctx.store.drop_index(params["name"], params["field_name"])
    return update_result(operation, request.query_bool("wait", False))


ROUTES = [
    Route("GET", "/collections", list_collections, LIST),
    Route("GET", "/collections/{name}", get_collection),
    Route("PUT", "/collections/{name}", create_collection, MANAGE),
    Route("DELETE", "/collections/{name}", delete_collection, MANAGE),
    Route("GET", "/collections/{name}/exists", collection_exists),
    Route("PUT", "/collections/{name}/index", create_index, WRITE),
    Route("DELETE", "/collections/{name}/index/{field_name}", delete_index, WRITE),
]
