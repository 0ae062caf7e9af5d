"""The application's Qdrant credential: a JWT scoped to the memory collections.

Qdrant (``service.jwt_rbac: true``) accepts HS256 tokens signed with its API key
in place of the key itself, limited by their ``access`` claim. The application
gets one that reads and writes exactly the memory collections it uses; memops
keeps the API key. So a collection outside that list, such as the ones a
quarantine moves a tenant's points into (``memops-quarantine-…``), is out of the
application's reach, read and write, while memops still sees everything.

The token has no ``exp`` and no ``iat``: the same key and collections give the
same token, so a re-deploy changes nothing. It ends with the API key: rotating
the key (or changing the collections) is how it is revoked.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Sequence
from typing import Any

from memops.errors import Refused
from memops.model import is_quarantine_collection


class TokenError(Refused, ValueError):
    """The collections cannot make a token (empty, duplicated or reserved names)."""


def access_claim(collections: Sequence[str]) -> list[dict[str, str]]:
    """``rw`` on each collection, in the given order; refuses names memops reserves."""
    if not collections:
        raise TokenError("the application's token needs at least one collection")
    if len(set(collections)) != len(collections):
        raise TokenError("a collection is listed twice")
    for name in collections:
        if not name or is_quarantine_collection(name):
            raise TokenError(f"{name!r} cannot be an application collection")
    return [{"collection": name, "access": "rw"} for name in collections]


def app_token(api_key: str, collections: Sequence[str]) -> str:
    """The HS256 JWT that reads and writes ``collections`` only."""
    return sign({"access": access_claim(collections)}, api_key)


def sign(claims: dict[str, Any], api_key: str) -> str:
    header = _part({"alg": "HS256", "typ": "JWT"})
    body = _part(claims)
    signature = hmac.new(api_key.encode(), f"{header}.{body}".encode(), hashlib.sha256).digest()
    return f"{header}.{body}.{_b64(signature)}"


def _part(value: dict[str, Any]) -> str:
    return _b64(json.dumps(value, sort_keys=True, separators=(",", ":")).encode())


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
