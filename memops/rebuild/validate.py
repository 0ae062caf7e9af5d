"""Integrity of one namespace in every tier: good, corrupt, undecryptable, orphaned.

- Redis: every value of ``{prefix}:memory:{tenant}:*`` (SCAN, each key re-checked
  to belong to the namespace exactly) is opened with ``memops.memory.values``:
  its content hash verified, decrypted with the key ring when sealed.
- PostgreSQL: the tenant's live ``memory_items`` rows (neither soft-deleted nor
  anonymized: the rows the application reads): content present and matching its
  ``content_hash`` (migration 0006), an embedding of finite numbers. A soft-deleted
  row is out of service and waits for ``memory.anonymize``, so a soft rebuild that
  soft-deletes a corrupt row leaves the namespace clean. (A supersede link into
  another tenant is refused by the foreign key on (tenant_id, superseded_by) already.)
- Qdrant: the tenant's points in every collection: the payload names the point,
  the vector is finite and equals the episodic copy of the row's embedding.
- Orphaned (when both tiers are checked): a point without its live, indexed row,
  or a live, indexed row without its point (the rule of ``memops.backup.cross_tier``).

Each check sorts an entry into one verdict with a reason code; the report keeps
every offender (a soft rebuild acts on them) and shows the first few.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from memops.keys.ring import KeyRing
from memops.memory.qdrant_points import collection_names, scroll_pages, tenant_selector
from memops.memory.values import CORRUPT, GOOD, UNDECRYPTABLE, content_hash, inspect_value
from memops.model import NAMESPACE_FIELD, chunks, key_in_namespace, namespace_pattern
from memops.progress import meter

if TYPE_CHECKING:
    import psycopg
    import redis
    from qdrant_client import QdrantClient

ORPHANED = "orphaned"
VERDICTS = (GOOD, CORRUPT, UNDECRYPTABLE, ORPHANED)
SHOWN = 5  # offenders listed per tier in a summary

# Reason codes of the episodic and semantic tiers (Redis values use memory_values').
CONTENT_MISSING = "content_missing"
CONTENT_HASH_MISMATCH = "content_hash_mismatch"  # content changed since its writer hashed it
NO_CONTENT_HASH = "no_content_hash"  # the hash was cleared (0006 fills it on every INSERT)
EMBEDDING_INVALID = "embedding_invalid"
PAYLOAD_MISMATCH = "payload_mismatch"  # tenant_id / memory_id of the payload wrong
VECTOR_INVALID = "vector_invalid"
VECTOR_MISMATCH = "vector_mismatch"  # differs from the row's embedding
NO_LIVE_ROW = "no_live_row"  # a point without its live, indexed row
NO_POINT = "no_point"  # a live, indexed row without its point

VECTOR_TOLERANCE = 1e-6  # both copies are float32: they agree far closer than this


@dataclass(frozen=True)
class IndexedRow:
    """A live, indexed row with its embedding: what its Qdrant point must match."""

    id: str
    embedding: tuple[float, ...]


@dataclass(frozen=True)
class Offender:
    id: str  # Redis key, row id or point id
    verdict: str
    reason: str
    where: str = ""  # the collection of a point

    def to_dict(self) -> dict[str, str]:
        found = {"id": self.id, "verdict": self.verdict, "reason": self.reason}
        return found | ({"collection": self.where} if self.where else {})


@dataclass
class TierReport:
    tier: str
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(VERDICTS, 0))
    offenders: list[Offender] = field(default_factory=list)

    def add(self, entry_id: str, verdict: str, reason: str = "", where: str = "") -> None:
        self.counts[verdict] += 1
        if verdict != GOOD:
            self.offenders.append(Offender(entry_id, verdict, reason, where))

    @property
    def checked(self) -> int:
        return sum(self.counts.values())

    @property
    def clean(self) -> bool:
        return not self.offenders

    def to_dict(self) -> dict[str, Any]:
        return {
            "tier": self.tier,
            "checked": self.checked,
            **self.counts,
            "offenders": [o.to_dict() for o in self.offenders[:SHOWN]],
        }


@dataclass
class NamespaceReport:
    tenant: str
    tiers: dict[str, TierReport]
    # The tenant's live, indexed rows that validated, by id (when PostgreSQL was checked).
    indexed: dict[str, IndexedRow] = field(default_factory=dict, repr=False)

    @property
    def clean(self) -> bool:
        return all(t.clean for t in self.tiers.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "tenant": self.tenant,
            "clean": self.clean,
            "tiers": {name: t.to_dict() for name, t in self.tiers.items()},
        }


# --------------------------------------------------------------------------- redis


def namespace_keys(client: redis.Redis, prefix: str, tenant: str, *, count: int = 1000) -> set[str]:
    """Every key of the namespace (SCAN may return a key twice: a set)."""
    keys = set()
    for raw in client.scan_iter(match=namespace_pattern(prefix, tenant), count=count):
        key = raw.decode("utf-8", "surrogateescape") if isinstance(raw, bytes) else raw
        if key_in_namespace(key, prefix, tenant):
            keys.add(key)
    return keys


def validate_redis(
    client: redis.Redis, prefix: str, tenant: str, ring: KeyRing | None, *, batch: int = 500
) -> TierReport:
    report = TierReport("redis")
    keys = sorted(namespace_keys(client, prefix, tenant))
    with meter().count(f"redis {tenant}", "keys", total=len(keys)) as counter:
        for chunk in chunks(keys, batch):
            for key, raw in zip(chunk, client.mget(chunk), strict=True):
                if raw is None:
                    continue  # expired or removed since the scan: nothing to judge
                check = inspect_value(raw, key, ring)
                report.add(key, check.verdict, check.reason)
            counter.advance(len(chunk))
    return report


# ---------------------------------------------------------------------- postgresql

_ROWS = """
SELECT id::text, content, content_hash, embedding, indexed_at IS NOT NULL
FROM memory_items WHERE tenant_id = %s AND deleted_at IS NULL AND anonymized_at IS NULL
ORDER BY created_at, id
"""


def validate_postgres(
    conn: psycopg.Connection[Any], tenant: str
) -> tuple[TierReport, dict[str, IndexedRow]]:
    """The episodic report, and the tenant's indexed live rows by id (for the semantic check)."""
    report = TierReport("postgresql")
    indexed: dict[str, IndexedRow] = {}
    with conn.transaction():
        rows = conn.execute(_ROWS, (tenant,)).fetchall()
    with meter().count(f"postgresql {tenant}", "rows", total=len(rows)) as counter:
        for row_id, content, digest, embedding, is_indexed in rows:
            reason = _row_problem(content, digest, embedding)
            report.add(row_id, CORRUPT if reason else GOOD, reason)
            if not reason and is_indexed and embedding is not None:
                indexed[row_id] = IndexedRow(row_id, tuple(float(x) for x in embedding))
            counter.advance(1)
    return report, indexed


def _row_problem(content: str | None, digest: str | None, embedding: Sequence[float] | None) -> str:
    if content is None:
        return CONTENT_MISSING
    if digest is None:
        return NO_CONTENT_HASH
    if content_hash(content) != digest:
        return CONTENT_HASH_MISMATCH
    if embedding is not None and not _finite_vector(embedding):
        return EMBEDDING_INVALID
    return ""


# -------------------------------------------------------------------------- qdrant


def tenant_points(client: QdrantClient, tenant: str, *, page: int = 256) -> Iterator[Any]:
    """(collection, record) of every point of ``tenant`` in every collection."""
    selector = tenant_selector(tenant)
    for collection in collection_names(client):
        for records in scroll_pages(client, collection, selector, page=page):
            yield from ((collection, record) for record in records)


def validate_qdrant(
    client: QdrantClient, tenant: str, indexed: dict[str, IndexedRow] | None
) -> tuple[TierReport, set[str]]:
    """The semantic report and the ids of the points seen.

    ``indexed`` (the episodic tier's live, indexed rows) turns on the vector and
    orphan checks; without it only each point's own shape is checked.
    """
    report = TierReport("qdrant")
    seen: set[str] = set()
    with meter().count(f"qdrant {tenant}", "points") as counter:
        for collection, record in tenant_points(client, tenant):
            point_id = str(record.id)
            seen.add(point_id)
            verdict, reason = _point_problem(tenant, point_id, record, indexed)
            report.add(point_id, verdict, reason, collection)
            counter.advance(1)
    return report, seen


def _point_problem(
    tenant: str, point_id: str, record: Any, indexed: dict[str, IndexedRow] | None
) -> tuple[str, str]:
    payload = record.payload or {}
    if payload.get(NAMESPACE_FIELD) != tenant or str(payload.get("memory_id", "")) != point_id:
        return CORRUPT, PAYLOAD_MISMATCH
    vector = _plain_vector(record.vector)
    if vector is None or not _finite_vector(vector):
        return CORRUPT, VECTOR_INVALID
    if indexed is None:
        return GOOD, ""
    row = indexed.get(point_id)
    if row is None:
        return ORPHANED, NO_LIVE_ROW
    if not _same_vector(vector, row.embedding):
        return CORRUPT, VECTOR_MISMATCH
    return GOOD, ""


def add_rows_without_points(
    report: TierReport, indexed: dict[str, IndexedRow], seen: set[str]
) -> None:
    """A live, indexed row whose point is gone is orphaned (it was counted good as a row)."""
    for row_id in sorted(indexed.keys() - seen):
        report.counts[GOOD] -= 1
        report.add(row_id, ORPHANED, NO_POINT)


# ------------------------------------------------------------------------- helpers


def _plain_vector(vector: Any) -> list[float] | None:
    if isinstance(vector, dict):  # named vectors: the unnamed one, or the only one
        vector = vector.get("") if "" in vector else next(iter(vector.values()), None)
    if not isinstance(vector, list) or not vector:
        return None
    return [float(x) for x in vector]


def _finite_vector(vector: Iterable[float]) -> bool:
    values = list(vector)
    return bool(values) and all(math.isfinite(float(x)) for x in values)


def _same_vector(a: Sequence[float], b: Sequence[float]) -> bool:
    if len(a) != len(b):
        return False
    return all(abs(x - y) <= VECTOR_TOLERANCE for x, y in zip(a, b, strict=True))


# ------------------------------------------------------------------------ together


@dataclass(frozen=True)
class RedisScope:
    client: redis.Redis
    prefix: str
    ring: KeyRing | None


def validate_namespace(
    tenant: str,
    *,
    redis_scope: RedisScope | None = None,
    postgres: psycopg.Connection[Any] | None = None,
    qdrant: QdrantClient | None = None,
) -> NamespaceReport:
    """Check the tiers given (None: not checked); orphans when both PostgreSQL and Qdrant are."""
    tiers: dict[str, TierReport] = {}
    if redis_scope is not None:
        tiers["redis"] = validate_redis(
            redis_scope.client, redis_scope.prefix, tenant, redis_scope.ring
        )
    indexed = None
    if postgres is not None:
        tiers["postgresql"], indexed = validate_postgres(postgres, tenant)
    if qdrant is not None:
        tiers["qdrant"], seen = validate_qdrant(qdrant, tenant, indexed)
        if indexed is not None:
            add_rows_without_points(tiers["postgresql"], indexed, seen)
    return NamespaceReport(tenant, tiers, indexed or {})
