"""Service endpoints: version, Kubernetes-style health checks and Prometheus metrics."""

from __future__ import annotations

import json

from qdrant_standin import COMMIT, TITLE, VERSION
from qdrant_standin.access import GLOBAL_READ, OPEN
from qdrant_standin.context import Context
from qdrant_standin.protocol import Request, Response, text
from qdrant_standin.router import Route


def version_info(ctx: Context, request: Request) -> Response:
    """``GET /``: VersionInfo, sent bare (without the result envelope) like Qdrant does."""
    body = {"title": TITLE, "version": VERSION, "commit": COMMIT}
    return Response(200, json.dumps(body, separators=(",", ":")).encode())


def healthz(ctx: Context, request: Request) -> Response:
    return text(200, "healthz check passed")


def livez(ctx: Context, request: Request) -> Response:
    return text(200, "livez check passed")


def readyz(ctx: Context, request: Request) -> Response:
    return text(200, "all shards are ready")


def metrics(ctx: Context, request: Request) -> Response:
    names = ctx.store.names()
    body = ctx.metrics.render("qdrant", VERSION, len(names), ctx.store.vector_total())
    return Response(200, body.encode(), content_type="text/plain; version=0.0.4; charset=utf-8")


ROUTES = [
    Route("GET", "/", version_info, OPEN),
    Route("GET", "/healthz", healthz, OPEN),
    Route("GET", "/livez", livez, OPEN),
    Route("GET", "/readyz", readyz, OPEN),
    Route("GET", "/metrics", metrics, GLOBAL_READ),
]
