"""Who may do what: the API key may do everything; with ``service.jwt_rbac`` a JWT may less.

Modelled on Qdrant's RBAC (``lib/storage/src/rbac``). A token is an HS256 JWT
signed with the API key. Its ``access`` claim is ``"r"`` (global read), ``"m"``
(global manage) or a list of ``{"collection": name, "access": "r" | "rw"}``; a
token without the claim has full access, as in Qdrant. ``exp`` (seconds since
the epoch) ends a token. A collection-scoped token sees only its collections in
the collection list and gets 403 for any other collection; creating or dropping
collections, recovering snapshots and the metrics need global access.

Refused rather than half-honoured: any other algorithm, the ``payload`` filter of
an access entry (deprecated in Qdrant 1.16) and the ``value_exists`` claim, so a
token is never given more than its issuer meant.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

# What a route needs (Route.access)
OPEN = "open"  # served without a key: /, /healthz, /livez, /readyz
LIST = "list"  # any valid credential; a scoped token sees only its collections
GLOBAL_READ = "global_read"
MANAGE = "manage"
READ = "read"  # the collection of the path, read
WRITE = "write"  # the collection of the path, read and write

_GLOBAL_MODES = ("r", "m")
_COLLECTION_MODES = ("r", "rw")


class InvalidToken(Exception):
    """Not a token this server signed, expired, or with claims it does not honour."""


class Forbidden(Exception):
    """A valid credential without the access the request needs."""


@dataclass(frozen=True)
class Grant:
    """What one credential may do: a global mode, or a mode per collection."""

    global_mode: str | None = "m"
    collections: dict[str, str] = field(default_factory=dict)

    def check(self, need: str, collection: str | None) -> None:
        """Raise Forbidden unless the grant covers ``need`` (on ``collection``)."""
        if need in (OPEN, LIST):
            return
        if self.global_mode is not None:
            if need != READ and need != GLOBAL_READ and self.global_mode != "m":
                raise Forbidden("Global manage access is required")
            return
        if need in (GLOBAL_READ, MANAGE):
            raise Forbidden("Global access is required")
        mode = self.collections.get(collection or "")
        if mode is None:
            raise Forbidden(f"Access to collection {collection} is required")
        if need == WRITE and mode != "rw":
            raise Forbidden(f"Write access to collection {collection} is required")

    def visible(self, names: Iterable[str]) -> list[str]:
        """The collections this grant may list."""
        if self.global_mode is not None:
            return list(names)
        return [name for name in names if name in self.collections]


FULL = Grant()


def grant_for(credential: str, api_key: str, *, jwt_rbac: bool, now: float | None = None) -> Grant:
    """The grant of the API key itself or of a token signed with it."""
    if hmac.compare_digest(credential.encode(), api_key.encode()):
        return FULL
    if not jwt_rbac:
        raise InvalidToken("Invalid API key or JWT")
    return _grant(_claims(credential, api_key), time.time() if now is None else now)


def _claims(token: str, api_key: str) -> dict[str, Any]:
    parts = token.split(".")
    if len(parts) != 3:
        raise InvalidToken("Invalid API key or JWT")
    header = _json_part(parts[0])
    if header.get("alg") != "HS256":
        raise InvalidToken("Invalid JWT: only HS256 tokens are accepted")
    signed = f"{parts[0]}.{parts[1]}".encode()
    expected = hmac.new(api_key.encode(), signed, hashlib.sha256).digest()
    if not hmac.compare_digest(_b64decode(parts[2]), expected):
        raise InvalidToken("Invalid API key or JWT")
    return _json_part(parts[1])


def _grant(claims: dict[str, Any], now: float) -> Grant:
    expires = claims.get("exp")
    if expires is not None and (not isinstance(expires, int | float) or expires <= now):
        raise InvalidToken("Invalid JWT: the token has expired")
    if "value_exists" in claims:
        raise InvalidToken("Invalid JWT: the value_exists claim is not supported")
    access = claims.get("access", "m")
    if isinstance(access, str):
        if access not in _GLOBAL_MODES:
            raise InvalidToken(f"Invalid JWT: unknown access {access!r}")
        return Grant(global_mode=access)
    if not isinstance(access, list):
        raise InvalidToken("Invalid JWT: access must be 'r', 'm' or a list of collections")
    collections: dict[str, str] = {}
    for entry in access:
        if not isinstance(entry, dict) or set(entry) - {"collection", "access", "payload"}:
            raise InvalidToken("Invalid JWT: an access entry is {collection, access}")
        name, mode = entry.get("collection"), entry.get("access")
        if not isinstance(name, str) or mode not in _COLLECTION_MODES:
            raise InvalidToken("Invalid JWT: an access entry needs a collection and 'r' or 'rw'")
        if "payload" in entry:
            raise InvalidToken("Invalid JWT: payload restrictions are not supported")
        if name in collections:
            raise InvalidToken(f"Invalid JWT: collection {name!r} is listed twice")
        collections[name] = mode
    return Grant(global_mode=None, collections=collections)


def _json_part(part: str) -> dict[str, Any]:
    try:
        value = json.loads(_b64decode(part))
    except (ValueError, UnicodeDecodeError):
        raise InvalidToken("Invalid API key or JWT") from None
    if not isinstance(value, dict):
        raise InvalidToken("Invalid API key or JWT")
    return value


def _b64decode(part: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
    except (ValueError, binascii.Error):
        raise InvalidToken("Invalid API key or JWT") from None
