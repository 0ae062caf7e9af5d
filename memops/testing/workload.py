"""The project's workload generator: memory data for tests, drills and benchmarks.

``generate(seed, …)`` builds plain data (deterministic from the seed, no I/O).
Writers put it into each tier, readers take it back out, and verifiers compare
what a tier holds with the workload exactly, returning the mismatches.

Tenant names are data. The generator includes hostile ones on purpose (glob
characters, quotes, SQL, paths, shell syntax, look-alike unicode, a tenant that
is a prefix of another): code that builds patterns, queries or file names from
a tenant must survive them. All SQL here is parameterized, and Redis lookups
use ``escape_glob`` plus an exact ``key_in_namespace`` check.
"""

from __future__ import annotations

import math
import random
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from memops.memory.embedder import float32
from memops.memory.qdrant_points import (  # re-exported likewise
    QdrantPoint as QdrantPoint,
)
from memops.memory.qdrant_points import (
    ensure_collection as ensure_collection,
)
from memops.memory.qdrant_points import (
    point_from_record,
)
from memops.memory.qdrant_points import (
    read_qdrant as read_qdrant,
)
from memops.memory.qdrant_points import (
    upsert_points as upsert_points,
)
from memops.memory.values import NONCE_BYTES, content_hash, plain_value, sealed_value
from memops.model import (  # re-exported: tests and benchmarks spell them wl.X
    DEFAULT_PREFIX as DEFAULT_PREFIX,
)
from memops.model import (
    FACT as FACT,
)
from memops.model import (
    REDIS_TYPES as REDIS_TYPES,
)
from memops.model import (
    SOURCE_KINDS as SOURCE_KINDS,
)
from memops.model import (
    chunks as chunks,
)
from memops.model import (
    escape_glob as escape_glob,
)
from memops.model import (
    key_in_namespace as key_in_namespace,
)
from memops.model import (
    namespace_key_regex as namespace_key_regex,
)
from memops.model import (
    namespace_pattern as namespace_pattern,
)
from memops.model import (
    point_payload as point_payload,
)
from memops.model import (
    redis_key as redis_key,
)

if TYPE_CHECKING:
    import psycopg
    import redis
    from qdrant_client import QdrantClient

    from memops.keys.ring import KeyRing

DEFAULT_TTL_S = 86400
DEFAULT_VECTOR_DIM = 16
# Timestamps are offsets from this fixed instant, so a seed always gives the same data.
BASE_TIME = datetime(2025, 1, 1, tzinfo=UTC)

AGENTS = ("planner", "coder", "reviewer", "researcher")

NASTY_TENANTS: tuple[str, ...] = (
    "glob*star",
    "question?mark",
    "[brackets]",
    "[!negated]",
    "back\\slash",
    "o'brien",
    'double"quote',
    "'; DROP TABLE memory_items; --",
    "with space",
    "tab\tseparated",
    "percent%_like",
    "acme",
    "acme:eu",  # shares the key prefix of "acme": pattern matches must not leak
    "ACME",  # differs only in case: collides on case-insensitive file systems
    "{hash}tag",  # Redis Cluster hash-tag syntax
    "../escape",
    "$(touch pwned)",
    "-leading-dash",
    "Zürich",
    "café",  # NFC …
    "cafe\u0301",  # … and NFD: look the same, different tenants
    "日本語テナント",
    "emoji-🧠",
    "مستأجر",
)

_WORDS = (
    "user", "prefers", "dark", "mode", "deploy", "staging", "on", "friday", "the", "build",
    "failed", "because", "cache", "remember", "meeting", "notes", "summary", "vector",
    "recall", "agent", "tool", "call", "result", "invoice", "customer", "asked", "about",
    "refund", "policy", "migration", "plan", "rollback", "window",
)  # fmt: skip
_NASTY_CONTENT = (
    "it's",
    'say "hi"',
    "back\\slash",
    "line\nbreak",
    "tab\tstop",
    "emoji 🧠",
    "日本語",
    "'; DROP TABLE memory_items; --",
    "%s %(x)s {}",
    '{"json": true}',
    "</script>",
)


# --------------------------------------------------------------------------- data


@dataclass(frozen=True)
class RedisEntry:
    """One short-term memory key: ``{prefix}:memory:{tenant}:{type}:{id}``."""

    key: str
    tenant: str
    type: str
    id: str
    value: str  # the exact JSON text stored (memops.memory.values: plain or sealed)
    ttl: int
    key_id: str | None = None  # the key ring key it is sealed with; None when plain


@dataclass(frozen=True)
class MemoryItem:
    """One ``memory_items`` row, with the column names of the table."""

    id: str
    tenant_id: str
    user_id: str | None
    agent_id: str | None
    source_kind: str
    content: str | None
    content_hash: str | None  # sha256 of content (memory_values.content_hash), as in Redis
    embedding: tuple[float, ...] | None
    indexed_at: datetime | None
    judge_at: datetime | None
    superseded_by: str | None
    deleted_at: datetime | None
    anonymized_at: datetime | None
    created_at: datetime


@dataclass(frozen=True)
class Workload:
    seed: int
    prefix: str
    vector_dim: int
    tenants: tuple[str, ...]
    redis: tuple[RedisEntry, ...]
    memory_items: tuple[MemoryItem, ...]
    qdrant: tuple[QdrantPoint, ...]

    def items_of(self, tenant: str) -> list[MemoryItem]:
        return [item for item in self.memory_items if item.tenant_id == tenant]

    def chains(self) -> list[list[MemoryItem]]:
        """Supersede chains, oldest first (a lone item is a chain of one)."""
        by_id = {item.id: item for item in self.memory_items}
        newer_of_something = {i.superseded_by for i in self.memory_items if i.superseded_by}
        chains = []
        for item in self.memory_items:
            if item.id in newer_of_something:
                continue  # not the start of a chain
            chain = [item]
            while chain[-1].superseded_by is not None:
                chain.append(by_id[chain[-1].superseded_by])
            chains.append(chain)
        return chains


@dataclass(frozen=True)
class Mismatch:
    """A difference between a tier and the workload."""

    tier: str
    key: str
    problem: str

    def __str__(self) -> str:
        return f"{self.tier} {self.key!r}: {self.problem}"


# --------------------------------------------------------------------- generation


def generate(
    seed: int,
    tenants: int | Sequence[str] = 3,
    *,
    nasty: bool = True,
    prefix: str = DEFAULT_PREFIX,
    redis_keys_per_tenant: int = 6,
    items_per_tenant: int = 8,
    vector_dim: int = DEFAULT_VECTOR_DIM,
    keyring: KeyRing | None = None,
    encrypted_share: float = 0.5,
) -> Workload:
    """Build a workload; the same arguments always give an equal result.

    ``tenants`` is either a number of plain generated tenants (plus every name
    in NASTY_TENANTS when ``nasty``) or the exact tenant names to use. With a
    ``keyring``, about ``encrypted_share`` of the Redis values are sealed with its
    active key (nonces drawn from the seed, so the data is reproducible).
    """
    if vector_dim < 1:
        raise ValueError("vector_dim must be at least 1")
    rng = random.Random(seed)
    if isinstance(tenants, int):
        plain = [f"tenant-{i:02d}-{rng.getrandbits(16):04x}" for i in range(tenants)]
        names = (*NASTY_TENANTS, *plain) if nasty else tuple(plain)
    else:
        names = tuple(tenants)
    if len(set(names)) != len(names) or "" in names:
        raise ValueError("tenant names must be unique and non-empty")

    # Sealing draws from its own generator: with or without a key ring, the keys,
    # contents and TTLs are the same.
    seal_rng = random.Random(f"{seed}:seal")
    sealing = None if keyring is None else (keyring, seal_rng, encrypted_share)
    redis_entries: list[RedisEntry] = []
    items: list[MemoryItem] = []
    for tenant in names:
        redis_entries.extend(
            _redis_entry(rng, prefix, tenant, sealing) for _ in range(redis_keys_per_tenant)
        )
        items.extend(_memory_items(rng, tenant, items_per_tenant, vector_dim))
    points = tuple(
        QdrantPoint(
            id=item.id,
            kind=item.source_kind,
            vector=item.embedding,
            payload=point_payload(item.tenant_id, item.source_kind, item.id),
        )
        for item in items
        if item.embedding is not None and item.indexed_at is not None and item.deleted_at is None
    )
    return Workload(
        seed=seed,
        prefix=prefix,
        vector_dim=vector_dim,
        tenants=names,
        redis=tuple(redis_entries),
        memory_items=tuple(items),
        qdrant=points,
    )


def _redis_entry(
    rng: random.Random,
    prefix: str,
    tenant: str,
    sealing: tuple[KeyRing, random.Random, float] | None,
) -> RedisEntry:
    type_ = rng.choice(REDIS_TYPES)
    id_ = f"{rng.getrandbits(48):012x}"
    key = redis_key(prefix, tenant, type_, id_)
    content = _content(rng)
    created_at = (BASE_TIME + timedelta(seconds=rng.randrange(90 * 86400))).isoformat()
    ttl = DEFAULT_TTL_S if rng.random() < 0.75 else rng.randrange(600, 7200)
    if sealing is not None and sealing[1].random() < sealing[2]:
        keyring, seal_rng, _ = sealing
        nonce = seal_rng.getrandbits(8 * NONCE_BYTES).to_bytes(NONCE_BYTES, "big")
        value = sealed_value(
            content,
            created_at,
            key_name=key,
            key_id=keyring.active,
            secret=keyring.active_secret,
            nonce=nonce,
        )
        return RedisEntry(key, tenant, type_, id_, value, ttl, keyring.active)
    return RedisEntry(key, tenant, type_, id_, plain_value(content, created_at), ttl)


def _memory_items(
    rng: random.Random, tenant: str, count: int, vector_dim: int
) -> Iterator[MemoryItem]:
    """Chains of items: every tenant's first chain has three links when it can.

    The links of a chain longer than one are facts (the judge supersedes facts
    only); a lone item draws any kind, facts included.
    """
    made = 0
    clock = BASE_TIME + timedelta(seconds=rng.randrange(86400))
    while made < count:
        length = min(count - made, 3 if made == 0 else rng.choice((1, 1, 1, 2, 3, 4)))
        ids = [_uuid(rng) for _ in range(length)]
        for position, item_id in enumerate(ids):
            clock += timedelta(seconds=rng.randrange(1, 3600), microseconds=rng.randrange(10**6))
            newer = ids[position + 1] if position + 1 < length else None
            kind = FACT if length > 1 else rng.choice(SOURCE_KINDS)
            yield _memory_item(rng, tenant, item_id, newer, clock, vector_dim, kind)
        made += length


def _memory_item(
    rng: random.Random,
    tenant: str,
    item_id: str,
    superseded_by: str | None,
    created_at: datetime,
    vector_dim: int,
    source_kind: str,
) -> MemoryItem:
    embedding = _vector(rng, vector_dim) if rng.random() < 0.85 else None
    indexed_at = created_at + timedelta(seconds=rng.randrange(1, 120)) if embedding else None
    # A superseded row was always judged (the judge decided to supersede it).
    judged = superseded_by is not None or rng.random() < 0.5
    judge_at = created_at + timedelta(minutes=rng.randrange(1, 600)) if judged else None
    deleted_at = anonymized_at = None
    user_id: str | None = f"user-{rng.randrange(100):02d}" if rng.random() < 0.8 else None
    content: str | None = _content(rng)
    if rng.random() < 0.2:
        deleted_at = created_at + timedelta(days=rng.randrange(1, 30))
        if rng.random() < 0.5:
            anonymized_at = deleted_at + timedelta(days=rng.randrange(1, 30))
            content = user_id = embedding = indexed_at = None
    return MemoryItem(
        id=item_id,
        tenant_id=tenant,
        user_id=user_id,
        agent_id=rng.choice((*AGENTS, None)),
        source_kind=source_kind,
        content=content,
        content_hash=content_hash(content) if content is not None else None,
        embedding=embedding,
        indexed_at=indexed_at,
        judge_at=judge_at,
        superseded_by=superseded_by,
        deleted_at=deleted_at,
        anonymized_at=anonymized_at,
        created_at=created_at,
    )


def _content(rng: random.Random) -> str:
    words = [rng.choice(_WORDS) for _ in range(rng.randrange(3, 12))]
    if rng.random() < 0.4:
        words.insert(rng.randrange(len(words) + 1), rng.choice(_NASTY_CONTENT))
    return " ".join(words)


def _vector(rng: random.Random, dim: int) -> tuple[float, ...]:
    """A unit vector whose components are exact float32 values (round-trips exactly)."""
    raw = [rng.gauss(0.0, 1.0) for _ in range(dim)]
    norm = math.sqrt(sum(x * x for x in raw)) or 1.0
    return tuple(float32(x / norm) for x in raw)


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


# ------------------------------------------------------------------------ helpers


def _text(value: str | bytes) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value


# -------------------------------------------------------------------------- redis


def write_redis(client: redis.Redis, workload: Workload, *, batch: int = 500) -> int:
    """SET every key with its TTL; returns the number of keys written."""
    for chunk in chunks(workload.redis, batch):
        pipe = client.pipeline(transaction=False)
        for entry in chunk:
            pipe.set(entry.key, entry.value, ex=entry.ttl)
        pipe.execute()
    return len(workload.redis)


def read_redis(client: redis.Redis, prefix: str, tenant: str) -> dict[str, tuple[str, int]]:
    """Every key of one tenant: key -> (value, remaining TTL in seconds, -1 = none)."""
    keys = [
        key
        for key in (_text(k) for k in client.scan_iter(match=namespace_pattern(prefix, tenant)))
        if key_in_namespace(key, prefix, tenant)
    ]
    result: dict[str, tuple[str, int]] = {}
    for chunk in chunks(keys, 500):
        pipe = client.pipeline(transaction=False)
        for key in chunk:
            pipe.get(key)
            pipe.ttl(key)
        replies = pipe.execute()
        for key, value, ttl in zip(chunk, replies[::2], replies[1::2], strict=True):
            if value is not None:  # expired between SCAN and GET
                result[key] = (_text(value), int(ttl))
    return result


def verify_redis(client: redis.Redis, workload: Workload) -> list[Mismatch]:
    """Values must match byte for byte, TTLs must be set and not above the workload's."""
    mismatches: list[Mismatch] = []
    expected: dict[str, dict[str, RedisEntry]] = {tenant: {} for tenant in workload.tenants}
    for entry in workload.redis:
        expected[entry.tenant][entry.key] = entry
    for tenant, entries in expected.items():
        actual = read_redis(client, workload.prefix, tenant)
        for key, entry in entries.items():
            if key not in actual:
                mismatches.append(Mismatch("redis", key, "missing"))
                continue
            value, ttl = actual[key]
            if value != entry.value:
                mismatches.append(Mismatch("redis", key, f"value {value!r} != {entry.value!r}"))
            if not 0 < ttl <= entry.ttl:
                mismatches.append(Mismatch("redis", key, f"ttl {ttl} not in (0, {entry.ttl}]"))
        mismatches.extend(
            Mismatch("redis", key, "unexpected key") for key in sorted(set(actual) - set(entries))
        )
    return mismatches


# --------------------------------------------------------------------- postgresql

_COLUMNS = (
    "id",
    "tenant_id",
    "user_id",
    "agent_id",
    "source_kind",
    "content",
    "content_hash",
    "embedding",
    "indexed_at",
    "judge_at",
    "superseded_by",
    "deleted_at",
    "anonymized_at",
    "created_at",
)
_INSERT = (
    "INSERT INTO memory_items (id, tenant_id, user_id, agent_id, source_kind, content,"
    " content_hash, embedding, indexed_at, judge_at, deleted_at, anonymized_at, created_at)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s::real[], %s, %s, %s, %s, %s)"
)
_LINK = "UPDATE memory_items SET superseded_by = %s WHERE id = %s AND tenant_id = %s"
_SELECT = (
    "SELECT id, tenant_id, user_id, agent_id, source_kind, content, content_hash, embedding,"
    " indexed_at, judge_at, superseded_by, deleted_at, anonymized_at, created_at"
    " FROM memory_items WHERE tenant_id = ANY(%s) ORDER BY tenant_id, created_at, id"
)


def write_postgres(conn: psycopg.Connection[Any], workload: Workload) -> int:
    """Insert every memory item in one transaction; returns the number of rows.

    Rows go in first and the supersede links after, so the order of the items
    never trips the foreign key.
    """
    rows = [
        (
            uuid.UUID(i.id),
            i.tenant_id,
            i.user_id,
            i.agent_id,
            i.source_kind,
            i.content,
            i.content_hash,
            list(i.embedding) if i.embedding is not None else None,
            i.indexed_at,
            i.judge_at,
            i.deleted_at,
            i.anonymized_at,
            i.created_at,
        )
        for i in workload.memory_items
    ]
    links = [
        (uuid.UUID(i.superseded_by), uuid.UUID(i.id), i.tenant_id)
        for i in workload.memory_items
        if i.superseded_by is not None
    ]
    with conn.transaction(), conn.cursor() as cur:
        if rows:
            cur.executemany(_INSERT, rows)
        if links:
            cur.executemany(_LINK, links)
    return len(rows)


def read_postgres(conn: psycopg.Connection[Any], tenants: Iterable[str]) -> list[MemoryItem]:
    """The memory items of ``tenants``, as the workload represents them."""
    with conn.transaction(), conn.cursor() as cur:
        cur.execute(_SELECT, (list(tenants),))
        rows = cur.fetchall()
    items = []
    for row in rows:
        values = dict(zip(_COLUMNS, row, strict=True))
        values["id"] = str(values["id"])
        if values["superseded_by"] is not None:
            values["superseded_by"] = str(values["superseded_by"])
        if values["embedding"] is not None:
            # real[] comes back as text like "0.13978152": the shortest decimal that
            # names the float32 exactly; rounding it to float32 again recovers it.
            values["embedding"] = tuple(float32(x) for x in values["embedding"])
        items.append(MemoryItem(**values))
    return items


def verify_postgres(conn: psycopg.Connection[Any], workload: Workload) -> list[Mismatch]:
    """Every column of every row must equal the workload's; no extra rows allowed."""
    expected = {item.id: item for item in workload.memory_items}
    actual = {item.id: item for item in read_postgres(conn, workload.tenants)}
    mismatches = [Mismatch("postgres", i, "missing") for i in expected if i not in actual]
    mismatches += [Mismatch("postgres", i, "unexpected row") for i in actual if i not in expected]
    for item_id in sorted(expected.keys() & actual.keys()):
        want, got = expected[item_id], actual[item_id]
        for column in _COLUMNS:
            if getattr(want, column) != getattr(got, column):
                mismatches.append(
                    Mismatch(
                        "postgres",
                        item_id,
                        f"{column} {getattr(got, column)!r} != {getattr(want, column)!r}",
                    )
                )
    return mismatches


# ------------------------------------------------------------------------- qdrant


def write_qdrant(
    client: QdrantClient,
    workload: Workload,
    collection: str,
    *,
    kind: str | None = None,
    batch: int = 256,
) -> int:
    """Upsert the points (only ``kind``'s when given) into ``collection``.

    A missing collection is created with DOT distance, which stores vectors as
    given (COSINE would renormalize them) and a keyword index on tenant_id.
    """
    points = [p for p in workload.qdrant if kind is None or p.kind == kind]
    ensure_collection(client, collection, workload.vector_dim)
    for chunk in chunks(points, batch):
        upsert_points(client, collection, chunk)
    return len(points)


def verify_qdrant(
    client: QdrantClient, workload: Workload, collection: str, *, kind: str | None = None
) -> list[Mismatch]:
    """Payloads must match exactly; vectors exactly too unless the collection is COSINE.

    A COSINE collection renormalizes on write, which can move the last float32
    bit of an already-unit vector, so there a 1e-6 tolerance applies.
    """
    from qdrant_client import models

    params = client.get_collection(collection).config.params.vectors
    cosine = isinstance(params, models.VectorParams) and params.distance == models.Distance.COSINE
    expected = {p.id: p for p in workload.qdrant if kind is None or p.kind == kind}
    actual = read_qdrant(client, collection, workload.tenants, kind=kind)
    # Points whose payload no longer matches the filter: fetch them by id.
    strays = [point_id for point_id in expected if point_id not in actual]
    for record in client.retrieve(collection, strays, with_payload=True, with_vectors=True):
        actual[str(record.id)] = point_from_record(record)
    mismatches = [Mismatch("qdrant", i, "missing") for i in expected if i not in actual]
    mismatches += [Mismatch("qdrant", i, "unexpected point") for i in actual if i not in expected]
    for point_id in sorted(expected.keys() & actual.keys()):
        want, got = expected[point_id], actual[point_id]
        if got.payload != want.payload:
            mismatches.append(
                Mismatch("qdrant", point_id, f"payload {got.payload!r} != {want.payload!r}")
            )
        if not _same_vector(want.vector, got.vector, 1e-6 if cosine else 0.0):
            mismatches.append(Mismatch("qdrant", point_id, "vector differs"))
    return mismatches


def _same_vector(want: Sequence[float], got: Sequence[float], tolerance: float) -> bool:
    """Qdrant stores float32 and prints each value's shortest float32 form over REST
    (0.29026425 for 0.2902642488479614), so the comparison is at float32 precision."""
    return len(want) == len(got) and all(
        abs(float32(a) - float32(b)) <= tolerance for a, b in zip(want, got, strict=True)
    )
