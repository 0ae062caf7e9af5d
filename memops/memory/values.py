"""The stored form of a short-term memory value, and how to check it on read.

A value is one JSON object. Plain::

    {"content": "...", "content_hash": "<sha256 of content>", "created_at": "..."}

Encrypted (AES-256-GCM under a key of the key ring, ``memops.keys.ring``)::

    {"enc": "AES-256-GCM", "key_id": "...", "nonce": "<b64, 12 bytes>",
     "ciphertext": "<b64>", "created_at": "..."}

The ciphertext seals the canonical JSON of ``{"content", "content_hash"}``, and
the Redis key name is the associated data: a value copied under another key
fails its tag instead of passing as that key's memory. ``inspect_value`` sorts a
value into good, corrupt or undecryptable with a reason code; it never raises.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import json
import os
import re
import threading
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from memops.keys.ring import KeyRing

ALGORITHM = "AES-256-GCM"
NONCE_BYTES = 12

GOOD = "good"
CORRUPT = "corrupt"
UNDECRYPTABLE = "undecryptable"
VERDICTS = (GOOD, CORRUPT, UNDECRYPTABLE)

# Reason codes of a value that is not good.
NOT_JSON = "not_json"
MISSING_FIELD = "missing_field"
HASH_MISMATCH = "hash_mismatch"
TAG_MISMATCH = "tag_mismatch"  # ciphertext, nonce or key name altered
UNKNOWN_KEY = "unknown_key"  # sealed with a key the ring does not hold
NO_KEYRING = "no_keyring"  # encrypted, and no key ring at all


@dataclass(frozen=True)
class ValueCheck:
    verdict: str
    reason: str = ""
    key_id: str | None = None  # the key an encrypted value is sealed with
    content: str | None = None  # only when good

    @property
    def good(self) -> bool:
        return self.verdict == GOOD


# One encoder for every value: json.dumps builds a new one per call when given options.
_CANONICAL = json.JSONEncoder(ensure_ascii=False, sort_keys=True, separators=(",", ":"))
# A value as sealed_value writes it, in printable ASCII (what json.loads makes of it is
# plain): its key id is read without parsing it.
_TEXT = rb'[^"\\\x00-\x1f\x7f-\xff]*'
_B64 = rb"[A-Za-z0-9+/=]*"
_CANONICAL_SEALED = re.compile(
    rb'\{"ciphertext":"' + _B64 + rb'","created_at":"' + _TEXT + rb'","enc":"' + _TEXT
    + rb'","key_id":"(' + _TEXT + rb')","nonce":"' + _B64 + rb'"\}'
)  # fmt: skip


def canonical_json(value: Any) -> str:
    return _CANONICAL.encode(value)


class _NonceSource:
    """Random nonces from the OS, drawn many at a time.

    One getrandom() call per value costs more than the sealing itself (a rotation
    seals a million); slicing a larger draw gives nonces just as random. A forked
    child starts with an empty buffer, never with a copy of its parent's.
    """

    _DRAW = NONCE_BYTES * 1024

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._buffer = b""
        self._offset = 0
        os.register_at_fork(after_in_child=self._forget)

    def _forget(self) -> None:
        self._buffer, self._offset = b"", 0

    def take(self) -> bytes:
        with self._lock:
            if self._offset + NONCE_BYTES > len(self._buffer):
                self._buffer, self._offset = os.urandom(self._DRAW), 0
            start = self._offset
            self._offset += NONCE_BYTES
            return self._buffer[start : self._offset]


_NONCES = _NonceSource()


def content_hash(content: str) -> str:
    return hashlib.sha256(content.encode("utf-8")).hexdigest()


def plain_value(content: str, created_at: str) -> str:
    return canonical_json(
        {"content": content, "content_hash": content_hash(content), "created_at": created_at}
    )


def sealed_value(
    content: str,
    created_at: str,
    *,
    key_name: str,
    key_id: str,
    secret: bytes,
    nonce: bytes | None = None,
) -> str:
    """The encrypted form; ``nonce`` only for reproducible test data (never reuse one)."""
    nonce = _NONCES.take() if nonce is None else nonce
    inner = canonical_json({"content": content, "content_hash": content_hash(content)})
    ciphertext = _cipher(secret).encrypt(nonce, inner.encode("utf-8"), key_name.encode("utf-8"))
    return canonical_json(
        {
            "enc": ALGORITHM,
            "key_id": key_id,
            "nonce": base64.b64encode(nonce).decode("ascii"),
            "ciphertext": base64.b64encode(ciphertext).decode("ascii"),
            "created_at": created_at,
        }
    )


def inspect_value(raw: bytes | str, key_name: str, ring: KeyRing | None) -> ValueCheck:
    """Good, corrupt or undecryptable, with the reason; never raises."""
    return _inspect(raw, key_name, ring)[0]


def _inspect(
    raw: bytes | str, key_name: str, ring: KeyRing | None
) -> tuple[ValueCheck, dict[str, Any]]:
    """The check, and the envelope it read (empty when it is not a JSON object)."""
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        envelope = json.loads(text)
    except (UnicodeDecodeError, ValueError):
        return ValueCheck(CORRUPT, NOT_JSON), {}
    if not isinstance(envelope, dict) or not isinstance(envelope.get("created_at"), str):
        return ValueCheck(CORRUPT, MISSING_FIELD), {}
    if "enc" not in envelope:
        return _check_inner(envelope, None), envelope
    return _open(envelope, key_name, ring), envelope


def reseal(raw: bytes | str, key_name: str, ring: KeyRing) -> str | None:
    """The value sealed under the ring's active key, or None when there is nothing to do.

    Nothing to do: already under the active key, or plain. A value that does not
    open (corrupt, unknown key) is left as it is too: rotation moves readable
    values and counts the others, it never rewrites what it cannot read.
    """
    check, envelope = _inspect(raw, key_name, ring)
    if not check.good or check.key_id in (None, ring.active):
        return None
    assert check.content is not None
    return sealed_value(
        check.content,
        envelope["created_at"],
        key_name=key_name,
        key_id=ring.active,
        secret=ring.active_secret,
    )


def key_id_of_value(raw: bytes | str) -> str | None:
    """The key id an encrypted value names (without opening it); None for anything else.

    Bytes are UTF-8 JSON, as ``inspect_value`` reads them. Counting key ids reads
    every value of a store: one that ``sealed_value`` wrote is read without parsing,
    one that cannot name a key (no ``key_id``, no JSON escape) is not parsed either.
    """
    if isinstance(raw, bytes):
        if canonical := _CANONICAL_SEALED.fullmatch(raw):
            return canonical.group(1).decode("ascii")
        if b"key_id" not in raw and b"\\" not in raw:
            return None
    try:
        envelope = json.loads(raw.decode("utf-8") if isinstance(raw, bytes) else raw)
    except (UnicodeDecodeError, ValueError):
        return None
    key_id = envelope.get("key_id") if isinstance(envelope, dict) else None
    return key_id if isinstance(key_id, str) and "enc" in envelope else None


@functools.lru_cache(maxsize=16)
def _cipher(secret: bytes) -> AESGCM:
    """One cipher object per key: a rotation opens and seals a million values with two keys."""
    return AESGCM(secret)


def _open(envelope: dict[str, Any], key_name: str, ring: KeyRing | None) -> ValueCheck:
    key_id = envelope.get("key_id")
    fields = (envelope.get("nonce"), envelope.get("ciphertext"))
    if (
        envelope.get("enc") != ALGORITHM
        or not isinstance(key_id, str)
        or not all(isinstance(f, str) for f in fields)
    ):
        return ValueCheck(CORRUPT, MISSING_FIELD, key_id if isinstance(key_id, str) else None)
    if ring is None:
        return ValueCheck(UNDECRYPTABLE, NO_KEYRING, key_id)
    secret = ring.secret(key_id)
    if secret is None:
        return ValueCheck(UNDECRYPTABLE, UNKNOWN_KEY, key_id)
    try:
        nonce, ciphertext = (base64.b64decode(str(f), validate=True) for f in fields)
        if len(nonce) != NONCE_BYTES:
            return ValueCheck(CORRUPT, TAG_MISMATCH, key_id)
        inner = _cipher(secret).decrypt(nonce, ciphertext, key_name.encode("utf-8"))
        decoded = json.loads(inner.decode("utf-8"))
    except (binascii.Error, ValueError):  # bad base64, or plaintext that is not JSON
        return ValueCheck(CORRUPT, TAG_MISMATCH, key_id)
    except InvalidTag:
        return ValueCheck(CORRUPT, TAG_MISMATCH, key_id)
    if not isinstance(decoded, dict):
        return ValueCheck(CORRUPT, MISSING_FIELD, key_id)
    return _check_inner(decoded, key_id)


def _check_inner(fields: dict[str, Any], key_id: str | None) -> ValueCheck:
    content, digest = fields.get("content"), fields.get("content_hash")
    if not isinstance(content, str) or not isinstance(digest, str):
        return ValueCheck(CORRUPT, MISSING_FIELD, key_id)
    if content_hash(content) != digest:
        return ValueCheck(CORRUPT, HASH_MISMATCH, key_id)
    return ValueCheck(GOOD, key_id=key_id, content=content)
