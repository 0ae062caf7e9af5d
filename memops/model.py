"""The data contract of the memory stack: what the application writes, and where.

Everything that builds a key, a pattern, a payload or a collection name from a
namespace takes it from here, so the layout is spelled once.

One word: a **namespace** is one agent tenant's memory. Users see "namespace"
in every option, message and JSON key; the stores keep the historical field
name ``tenant_id`` (a column of ``memory_items`` and a Qdrant payload field), and
code that handles one namespace's data often calls the value ``tenant``.

- Short-term memory (Redis): string values under
  ``{prefix}:memory:{namespace}:{type}:{id}``. The namespace may hold anything,
  ':' and glob characters included; type and id hold no ':'. A namespace's keys
  are found with ``namespace_pattern`` (SCAN MATCH, glob-escaped) and confirmed
  with ``key_in_namespace``: ``acme``'s pattern also matches ``acme:eu``'s keys.
- Episodic memory (PostgreSQL): rows of ``memory_items`` whose ``tenant_id`` is
  the namespace; ``source_kind`` is one of ``SOURCE_KINDS``.
- Semantic memory (Qdrant): points whose payload is ``point_payload(…)``; the
  ``tenant_id`` field is payload-indexed. A quarantined namespace's points move
  to ``memops-quarantine-<hash>`` collections (``quarantine_collection``).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, TypeVar

DEFAULT_PREFIX = "memops"

# The value types the application keeps in short-term memory.
REDIS_TYPES = ("session", "scratchpad", "task", "context")
# Facts are what the supersede judge compares: every link of a supersede chain is one.
FACT = "fact"
SOURCE_KINDS = ("chat", "tool_call", "document", "observation", FACT)

# The namespace's field in PostgreSQL rows and Qdrant payloads.
NAMESPACE_FIELD = "tenant_id"

QUARANTINE_PREFIX = "memops-quarantine-"


# ------------------------------------------------------------------ short-term keys


def redis_key(prefix: str, namespace: str, type_: str, id_: str) -> str:
    """``{prefix}:memory:{namespace}:{type}:{id}``; type and id may not contain ':'."""
    for label, part in (("type", type_), ("id", id_)):
        if not part or ":" in part:
            raise ValueError(f"redis key {label} must be non-empty and free of ':': {part!r}")
    if not namespace:
        raise ValueError("namespace must be non-empty")
    return f"{prefix}:memory:{namespace}:{type_}:{id_}"


def namespace_head(prefix: str, namespace: str) -> str:
    """What every key of the namespace starts with."""
    return f"{prefix}:memory:{namespace}:"


def escape_glob(text: str) -> str:
    """Escape Redis glob syntax (``* ? [ ] \\``) so ``text`` matches only itself."""
    return "".join("\\" + char if char in "\\*?[]" else char for char in text)


def memory_pattern(prefix: str) -> str:
    """SCAN MATCH pattern for every short-term memory key under ``prefix``."""
    return f"{escape_glob(prefix)}:memory:*"


def namespace_pattern(prefix: str, namespace: str) -> str:
    """SCAN MATCH pattern for a namespace's keys.

    The pattern also matches namespaces that extend this one past a ':' (``acme``
    matches ``acme:eu``'s keys): filter the results with ``key_in_namespace``.
    """
    return f"{escape_glob(prefix)}:memory:{escape_glob(namespace)}:*"


def key_in_namespace(key: str, prefix: str, namespace: str) -> bool:
    """True when ``key`` is exactly ``{prefix}:memory:{namespace}:{type}:{id}``."""
    head = namespace_head(prefix, namespace)
    if not key.startswith(head):
        return False
    type_, sep, id_ = key[len(head) :].partition(":")
    return bool(sep and type_ and id_ and ":" not in id_)


def namespace_key_regex(prefix: str, namespace: str) -> re.Pattern[bytes]:
    """A pattern whose ``fullmatch`` takes exactly the (UTF-8) keys ``key_in_namespace`` takes.

    For filtering keys as bytes in bulk: no decoding per key.
    """
    head = namespace_head(prefix, namespace).encode()
    return re.compile(re.escape(head) + rb"[^:]+:[^:]+")


# ----------------------------------------------------------------- semantic points


def point_payload(namespace: str, kind: str, memory_id: str) -> dict[str, Any]:
    """The payload of a memory item's Qdrant point."""
    return {NAMESPACE_FIELD: namespace, "kind": kind, "memory_id": memory_id}


def quarantine_collection(collection: str, namespace: str) -> str:
    """The collection that holds ``namespace``'s points of ``collection`` while quarantined.

    Named by a hash of both, so the name is a literal whatever the namespace holds
    and can be found again from the pair. The application's token never grants it.
    """
    digest = hashlib.sha256(f"{collection}\0{namespace}".encode()).hexdigest()[:32]
    return QUARANTINE_PREFIX + digest


def is_quarantine_collection(name: str) -> bool:
    return name.startswith(QUARANTINE_PREFIX)


def source_collection(name: str, namespace: str, candidates: Iterable[str]) -> str | None:
    """The memory collection ``name`` stands for, for ``namespace``.

    A memory collection stands for itself; a quarantine collection for the
    candidate whose quarantine collection it is for this namespace, or None when
    it is another namespace's (or its source is unknown).
    """
    if not is_quarantine_collection(name):
        return name
    sources = (c for c in candidates if not is_quarantine_collection(c))
    return next((c for c in sources if quarantine_collection(c, namespace) == name), None)


# ------------------------------------------------------------------------ batching

T = TypeVar("T")


def chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    """``items`` in slices of at most ``size``, for batched reads and writes."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


# ------------------------------------------------------------------ JSON vocabulary

# Keys of --json documents: the old word, and the word users see now. Documents carry
# both until the next release, so scheduled jobs that read the old key keep working.
_RENAMED_KEYS = {"tenant": "namespace", "tenants": "namespaces"}


def with_namespace_keys(document: Any) -> Any:
    """``document`` with a ``namespace``(s) key beside every ``tenant``(s) key, at any depth."""
    if isinstance(document, dict):
        renamed = {key: with_namespace_keys(value) for key, value in document.items()}
        for old, new in _RENAMED_KEYS.items():
            if old in renamed and new not in renamed:
                renamed[new] = renamed[old]
        return renamed
    if isinstance(document, list | tuple):
        return [with_namespace_keys(item) for item in document]
    return document
