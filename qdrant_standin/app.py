"""One request in, one response out: API key check, routing, envelope, metrics."""

from __future__ import annotations

import logging

from qdrant_standin import collections_api, points_api, service_api, snapshots_api
from qdrant_standin.access import Forbidden, InvalidToken, grant_for
from qdrant_standin.context import Context
from qdrant_standin.protocol import ApiError, Request, Response, failed, ok, text
from qdrant_standin.router import Match, Router

LOG = logging.getLogger("qdrant_standin")

# the paths real Qdrant serves without the API key (exact, and by prefix)
OPEN_PATHS = ("/", "/healthz")
OPEN_PREFIXES = ("/readyz", "/livez")

ROUTES = service_api.ROUTES + collections_api.ROUTES + points_api.ROUTES + snapshots_api.ROUTES
ROUTER = Router(ROUTES)


class App:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def handle(self, request: Request) -> Response:
        match = ROUTER.find(request.method, request.path)
        endpoint = match.route.pattern if match.route else "unknown"
        response = self._auth_failure(request, match)
        if response is None:
            try:
                if match.route is None:
                    raise _no_route(request, match.allowed)
                request.params = match.params
                result = match.route.handler(self.ctx, request)
                response = result if isinstance(result, Response) else ok(request, result)
            except ApiError as exc:
                response = failed(request, exc)
            except Exception as exc:
                LOG.exception("%s %s failed", request.method, endpoint)
                error = ApiError(500, f"Service internal error: {type(exc).__name__}: {exc}")
                response = failed(request, error)
        self.ctx.metrics.observe(request.method, endpoint, response.status, request.elapsed())
        return response

    def _auth_failure(self, request: Request, match: Match) -> Response | None:
        """401 as Qdrant sends it (plain text) without a valid credential, 403 without access.

        No key configured: everything is open, as in Qdrant.
        """
        api_key = self.ctx.settings.api_key
        path = request.path
        if api_key is None or path in OPEN_PATHS or path.startswith(OPEN_PREFIXES):
            return None
        given = request.headers.get("api-key")
        if given is None:
            bearer = request.headers.get("authorization", "")
            given = bearer.removeprefix("Bearer ") if bearer.startswith("Bearer ") else None
        if given is None:
            return text(401, "Must provide an API key or an Authorization bearer token")
        try:
            request.grant = grant_for(given, api_key, jwt_rbac=self.ctx.settings.jwt_rbac)
            if match.route is not None:
                request.grant.check(match.route.access, match.params.get("name"))
        except InvalidToken as exc:
            return text(401, str(exc))
        except Forbidden as exc:
            return failed(request, ApiError(403, f"Forbidden: {exc}"))
        return None


def _no_route(request: Request, allowed: tuple[str, ...]) -> ApiError:
    if allowed:
        return ApiError(405, f"Method {request.method} not allowed, use {', '.join(allowed)}")
    return ApiError(404, f"Not found: no endpoint {request.path}")
