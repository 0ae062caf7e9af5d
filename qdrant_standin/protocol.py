"""Requests, responses and errors in Qdrant's REST envelope.

Success: ``{"result": ..., "status": "ok", "time": seconds}``.
Failure: ``{"status": {"error": "..."}, "time": seconds}`` with Qdrant's status code.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import TypeAdapter, ValidationError

from qdrant_standin.access import FULL, Grant

T = TypeVar("T")


class ApiError(Exception):
    """An error answered with Qdrant's error envelope."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def not_found(message: str) -> ApiError:
    return ApiError(404, f"Not found: {message}")


def bad_request(message: str) -> ApiError:
    return ApiError(400, f"Bad request: {message}")


def wrong_input(message: str) -> ApiError:
    return ApiError(400, f"Wrong input: {message}")


@dataclass
class Response:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Request:
    method: str
    path: str
    query: Mapping[str, str]
    headers: Mapping[str, str]
    body: bytes
    started: float = field(default_factory=time.perf_counter)
    params: dict[str, str] = field(default_factory=dict)
    grant: Grant = FULL  # what the request's credential may do, set by the app

    def json(self) -> Any:
        """The body as JSON; an empty body is ``{}`` (Qdrant's optional bodies)."""
        if not self.body.strip():
            return {}
        try:
            return json.loads(self.body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ApiError(400, f"Format error in JSON body: {exc}") from None

    def model(self, model: type[T] | Any) -> T:
        """The body validated into a qdrant-client model (or a Union of them)."""
        try:
            return _adapter(model).validate_python(self.json())
        except ValidationError as exc:
            raise ApiError(400, f"Format error in JSON body: {_summarize(exc)}") from None

    def query_bool(self, name: str, default: bool) -> bool:
        value = self.query.get(name)
        if value is None or value == "":
            return default
        if value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise ApiError(400, f"Format error in query parameters: {name}={value!r} is not a bool")

    def elapsed(self) -> float:
        return time.perf_counter() - self.started


def ok(request: Request, result: Any) -> Response:
    body = {"result": result, "status": "ok", "time": request.elapsed()}
    return Response(200, _dump(body))


def failed(request: Request, error: ApiError) -> Response:
    body = {"status": {"error": error.message}, "time": request.elapsed()}
    return Response(error.status, _dump(body))


def text(status: int, message: str) -> Response:
    return Response(status, message.encode(), content_type="text/plain; charset=utf-8")


@functools.cache
def _adapter(model: Any) -> TypeAdapter[Any]:
    return TypeAdapter(model)


def _dump(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), allow_nan=False).encode()


def _summarize(exc: ValidationError, limit: int = 3) -> str:
    errors = exc.errors()
    parts = [
        f"{'.'.join(str(loc) for loc in err['loc']) or 'body'}: {err['msg']}"
        for err in errors[:limit]
    ]
    more = f" (and {len(errors) - limit} more)" if len(errors) > limit else ""
    return "; ".join(parts) + more


def update_result(operation_id: int, wait: bool) -> dict[str, Any]:
    """UpdateResult: like Qdrant, ``acknowledged`` unless the caller waited (the work is done
    either way: the stand-in applies every update before it answers)."""
    return {"operation_id": operation_id, "status": "completed" if wait else "acknowledged"}
