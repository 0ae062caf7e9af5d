"""Route table: ``(method, "/collections/{name}/points")`` -> handler."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from qdrant_standin.access import READ
from qdrant_standin.protocol import Request

if TYPE_CHECKING:
    from qdrant_standin.context import Context

Handler = Callable[["Context", Request], Any]


@dataclass(frozen=True)
class Route:
    method: str
    pattern: str  # also the `endpoint` label of the REST metrics
    handler: Handler
    access: str = READ  # what the credential must allow (qdrant_standin.access)

    @property
    def regex(self) -> re.Pattern[str]:
        return _compile(self.pattern)


@dataclass(frozen=True)
class Match:
    route: Route | None
    params: dict[str, str]
    allowed: tuple[str, ...]  # methods the path has, when route is None


class Router:
    def __init__(self, routes: list[Route]) -> None:
        self._routes = routes

    def find(self, method: str, path: str) -> Match:
        allowed: list[str] = []
        for route in self._routes:
            found = route.regex.fullmatch(path)
            if found is None:
                continue
            if route.method == method:
                params = {key: unquote(value) for key, value in found.groupdict().items()}
                return Match(route, params, ())
            allowed.append(route.method)
        return Match(None, {}, tuple(allowed))


_compiled: dict[str, re.Pattern[str]] = {}


def _compile(pattern: str) -> re.Pattern[str]:
    if pattern not in _compiled:
        regex = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(pattern))
        _compiled[pattern] = re.compile(regex)
    return _compiled[pattern]
