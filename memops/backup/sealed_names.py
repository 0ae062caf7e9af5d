"""Tenant names in the manifest of an encrypted set: tokens, the names sealed beside them.

A tenant name is data (a customer's name, an email). In an encrypted set the files hide
it, so the manifest must too: each name becomes ``n-`` and a keyed hash of it (HMAC under
a key HKDF'd from the backup key: no one without the key can test a guess), and the
mapping back is sealed in the manifest as one age payload for the key's identity. A
reader with the key (the store's, ``BackupStore.key``) sees the names again; one without
sees the tokens. Applied to the manifest document: where its names are (namespaces,
each tier's tenants, Redis's namespace files, PostgreSQL's file tokens).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import json
from collections.abc import Callable
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from memops.backup.artifacts import BackupError
from memops.backup.crypto import BackupKey, decrypting_reader, encrypting_reader

FIELD = "sealed_names"
_INFO = b"memops manifest tenant names v1"


def name_token(key: BackupKey, name: str) -> str:
    token_key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO).derive(key.secret)
    return "n-" + hmac.new(token_key, name.encode("utf-8"), hashlib.sha256).hexdigest()[:32]


def seal(document: dict[str, Any], key: BackupKey) -> dict[str, Any]:
    """The manifest document with every tenant name a token, and the names sealed in it."""
    names: dict[str, str] = {}

    def token(name: str) -> str:
        if name == "":  # a whole tier's data, no tenant
            return name
        names[name] = name_token(key, name)
        return names[name]

    sealed = _rename(document, token)
    mapping = json.dumps({t: n for n, t in sorted(names.items())}).encode("utf-8")
    payload = encrypting_reader(io.BytesIO(mapping), key).read()
    sealed[FIELD] = base64.b64encode(payload).decode("ascii")
    return sealed


def unseal(document: dict[str, Any], key: BackupKey | None) -> dict[str, Any]:
    """The document with its names back (as it is without ``key``, or when it has none)."""
    if FIELD not in document or key is None:
        return document
    try:
        payload = base64.b64decode(document[FIELD], validate=True)
        reader = decrypting_reader(io.BytesIO(payload), key, name="sealed_names")
        names: dict[str, str] = json.loads(reader.read())
    except (ValueError, BackupError):
        return document  # another key's, or damaged: the tokens stay; verify says why

    opened = _rename(document, lambda token: names.get(token, token))
    del opened[FIELD]
    return opened


def _rename(document: dict[str, Any], rename: Callable[[str], str]) -> dict[str, Any]:
    """A copy of the document with ``rename`` applied wherever a tenant name stands."""
    out = json.loads(json.dumps(document))
    out["namespaces"] = [rename(n) for n in out.get("namespaces", [])]
    for artifact in (out.get("artifacts") or {}).values():
        artifact["tenants"] = {rename(n): s for n, s in (artifact.get("tenants") or {}).items()}
        extra = artifact.get("extra") or {}
        if isinstance(extra.get("namespace_files"), dict):
            extra["namespace_files"] = {rename(n): f for n, f in extra["namespace_files"].items()}
        if isinstance(extra.get("tokens"), dict):
            extra["tokens"] = {f: rename(n) for f, n in extra["tokens"].items()}
    return out
