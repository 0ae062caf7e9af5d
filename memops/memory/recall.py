"""Recall validation: write known facts into the three tiers, ask for them back.

The scenario is fixed data: each case is a fact, the tier that keeps it and
the request the memory service would make for it, with the words a correct
answer contains.

- short-term: a session value under ``{prefix}:memory:{tenant}:session:{id}``
  (the memory_values envelope), asked for by its key;
- episodic: ``memory_items`` rows, asked for by words of their content (the
  newest live, not superseded row whose content has them all); one fact is
  superseded by a newer one, and the question must get the newer answer;
- semantic: points embedded with ``memops.memory.embedder``, asked for by a question
  embedded the same way (the nearest point of the tenant), whose row gives the answer.

Everything lives under one reserved tenant and one collection, removed after the
run unless kept. The success rate is correct answers over cases; coverage is the
share of cases that got any answer at all (a tier that lost its data answers nothing).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from memops.memory.embedder import DIM, embed
from memops.memory.qdrant_points import ensure_collection, tenant_selector
from memops.memory.values import inspect_value, plain_value
from memops.model import FACT, point_payload, redis_key
from memops.rebuild.redis_clear import clear_namespace

if TYPE_CHECKING:
    import psycopg
    import redis
    from qdrant_client import QdrantClient

TENANT = "memops-recall-check"
COLLECTION = "memops_recall"
DEFAULT_THRESHOLD = 0.95
TTL_S = 3600
TIERS = ("redis", "postgresql", "qdrant")
_NAMESPACE = uuid.UUID("5b0f6c1e-8d5a-4c1f-9a8e-2f0c7d3b9e11")
_WRITTEN_AT = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Case:
    name: str
    tier: str
    fact: str
    request: str  # short-term: the session id; episodic: words; semantic: a question
    expect: tuple[str, ...]  # words the answer must contain (case-insensitive)
    # episodic: the case whose fact replaces this one (asking must give the newer answer)
    superseded_by: str = ""


SCENARIO: tuple[Case, ...] = (
    Case(
        "session-ticket",
        "redis",
        "working on ticket OPS-4411 about the failing cron job",
        "sess-ticket",
        ("OPS-4411",),
    ),
    Case(
        "session-language",
        "redis",
        "the user writes in Portuguese and wants replies in it",
        "sess-language",
        ("Portuguese",),
    ),
    Case(
        "session-tool",
        "redis",
        "last tool call: kubectl rollout status deploy/api",
        "sess-tool",
        ("kubectl", "rollout"),
    ),
    Case(
        "session-budget",
        "redis",
        "token budget left for this task: 12000",
        "sess-budget",
        ("12000",),
    ),
    Case(
        "session-region",
        "redis",
        "the incident is limited to region eu-west-3",
        "sess-region",
        ("eu-west-3",),
    ),
    Case(
        "episodic-deploy-old",
        "postgresql",
        "the weekly deploy window is Tuesday 14:00 UTC",
        "deploy window",
        ("Thursday",),  # superseded: the answer is the newer fact's
        superseded_by="episodic-deploy-new",
    ),
    Case(
        "episodic-deploy-new",
        "postgresql",
        "the weekly deploy window moved to Thursday 09:00 UTC",
        "deploy window",
        ("Thursday",),
    ),
    Case(
        "episodic-oncall",
        "postgresql",
        "the on-call lead for December is Amara Okafor",
        "on-call lead December",
        ("Amara",),
    ),
    Case(
        "episodic-backup",
        "postgresql",
        "the restore drill of November took 14 minutes",
        "restore drill November",
        ("14 minutes",),
    ),
    Case(
        "episodic-vendor",
        "postgresql",
        "the CDN contract with Fastly renews in March",
        "CDN contract renews",
        ("Fastly", "March"),
    ),
    Case(
        "episodic-password",
        "postgresql",
        "database passwords rotate every 90 days via vault",
        "passwords rotate",
        ("90 days",),
    ),
    Case(
        "semantic-billing",
        "qdrant",
        "billing invoices are stored in postgres cluster db-billing-02",
        "where are billing invoices stored",
        ("db-billing-02",),
    ),
    Case(
        "semantic-cache",
        "qdrant",
        "the session cache evicts with allkeys-lru at 4 gigabytes",
        "which eviction policy does the session cache use",
        ("allkeys-lru",),
    ),
    Case(
        "semantic-search",
        "qdrant",
        "vector search for support tickets runs on qdrant collection tickets-v3",
        "which collection serves vector search for support tickets",
        ("tickets-v3",),
    ),
    Case(
        "semantic-alerts",
        "qdrant",
        "pager alerts for payments route to the team named falcon",
        "who gets pager alerts for payments",
        ("falcon",),
    ),
    Case(
        "semantic-mobile",
        "qdrant",
        "the mobile app release train ships every second friday",
        "how often does the mobile app release train ship",
        ("second friday",),
    ),
    Case(
        "semantic-gpu",
        "qdrant",
        "training jobs reserve gpu nodes from the pool called h100-east",
        "which pool do training jobs reserve gpu nodes from",
        ("h100-east",),
    ),
    Case(
        "semantic-legal",
        "qdrant",
        "customer data exports need approval from legal within 48 hours",
        "who approves customer data exports",
        ("legal",),
    ),
    Case(
        "semantic-dns",
        "qdrant",
        "internal dns zones are served by coredns on the infra cluster",
        "what serves internal dns zones",
        ("coredns",),
    ),
    Case(
        "semantic-latency",
        "qdrant",
        "the latency budget of the checkout api is 300 milliseconds p99",
        "latency budget checkout api",
        ("300 milliseconds",),
    ),
)


def case_id(case: Case) -> str:
    return str(uuid.uuid5(_NAMESPACE, case.name))


@dataclass
class CaseResult:
    case: Case
    answer: str | None
    ok: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.case.name,
            "tier": self.case.tier,
            "request": self.case.request,
            "expect": list(self.case.expect),
            "answer": self.answer,
            "ok": self.ok,
        }


@dataclass
class RecallReport:
    results: list[CaseResult] = field(default_factory=list)
    skipped_tiers: list[str] = field(default_factory=list)

    @property
    def success_rate(self) -> float:
        return sum(r.ok for r in self.results) / len(self.results) if self.results else 0.0

    @property
    def coverage(self) -> float:
        answered = sum(r.answer is not None for r in self.results)
        return answered / len(self.results) if self.results else 0.0

    def by_tier(self) -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        for tier in TIERS:
            mine = [r for r in self.results if r.case.tier == tier]
            if mine:
                found[tier] = {
                    "cases": len(mine),
                    "ok": sum(r.ok for r in mine),
                    "answered": sum(r.answer is not None for r in mine),
                }
        return found

    def to_dict(self) -> dict[str, Any]:
        return {
            "success_rate": round(self.success_rate, 4),
            "coverage": round(self.coverage, 4),
            "tiers": self.by_tier(),
            "skipped_tiers": self.skipped_tiers,
            "cases": [r.to_dict() for r in self.results],
        }


def answer_contains(answer: str | None, expect: Sequence[str]) -> bool:
    return answer is not None and all(word.lower() in answer.lower() for word in expect)


# --------------------------------------------------------------------------- redis


def _session_key(prefix: str, case: Case) -> str:
    return redis_key(prefix, TENANT, "session", case.request)


def write_redis(client: redis.Redis, prefix: str) -> None:
    with client.pipeline(transaction=False) as pipe:
        for case in SCENARIO:
            if case.tier == "redis":
                value = plain_value(case.fact, _WRITTEN_AT.isoformat())
                pipe.set(_session_key(prefix, case), value, ex=TTL_S)
        pipe.execute()


def ask_redis(client: redis.Redis, prefix: str, case: Case) -> str | None:
    key = _session_key(prefix, case)
    raw = client.get(key)
    if raw is None:
        return None
    check = inspect_value(raw, key, None)
    return check.content if check.good else None


def clear_redis(client: redis.Redis, prefix: str) -> int:
    return clear_namespace(client, prefix, TENANT).unlinked


# ---------------------------------------------------------------------- postgresql

_UPSERT = """
INSERT INTO memory_items (id, tenant_id, source_kind, content, embedding, indexed_at, created_at)
VALUES (%s, %s, 'fact', %s, %s::real[], %s, %s)
ON CONFLICT (id) DO UPDATE SET content = EXCLUDED.content, embedding = EXCLUDED.embedding,
    indexed_at = EXCLUDED.indexed_at, deleted_at = NULL, superseded_by = NULL
"""
_LINK = "UPDATE memory_items SET superseded_by = %s WHERE id = %s AND tenant_id = %s"
# Every word must be in the content: a literal substring match (no LIKE wildcards).
_FIND = """
SELECT content FROM memory_items
WHERE tenant_id = %s AND deleted_at IS NULL AND superseded_by IS NULL
  AND content IS NOT NULL AND source_kind = 'fact'
  AND NOT EXISTS (SELECT 1 FROM unnest(%s::text[]) w WHERE strpos(lower(content), w) = 0)
ORDER BY created_at DESC, id LIMIT 1
"""
_BY_ID = "SELECT content FROM memory_items WHERE tenant_id = %s AND id = %s AND deleted_at IS NULL"


def _stored(case: Case) -> bool:
    """Episodic and semantic facts both are rows (a point's answer is its row's content)."""
    return case.tier in ("postgresql", "qdrant")


def write_postgres(conn: psycopg.Connection[Any]) -> None:
    by_name = {c.name: c for c in SCENARIO}
    with conn.transaction(), conn.cursor() as cur:
        for position, case in enumerate(c for c in SCENARIO if _stored(c)):
            created = _WRITTEN_AT + timedelta(minutes=position)
            vector = list(embed(case.fact)) if case.tier == "qdrant" else None
            indexed = created if vector is not None else None
            cur.execute(_UPSERT, (case_id(case), TENANT, case.fact, vector, indexed, created))
        for case in SCENARIO:
            if case.superseded_by:
                newer = case_id(by_name[case.superseded_by])
                cur.execute(_LINK, (newer, case_id(case), TENANT))


def ask_postgres(conn: psycopg.Connection[Any], case: Case) -> str | None:
    terms = [w.lower() for w in case.request.split()]
    with conn.transaction():
        row = conn.execute(_FIND, (TENANT, terms)).fetchone()
    return None if row is None else str(row[0])


def clear_postgres(conn: psycopg.Connection[Any]) -> int:
    with conn.transaction(), conn.cursor() as cur:
        cur.execute("SET CONSTRAINTS memory_items_superseded_by_fkey DEFERRED")
        cur.execute("DELETE FROM memory_items WHERE tenant_id = %s", (TENANT,))
        return cur.rowcount


# -------------------------------------------------------------------------- qdrant


def write_qdrant(client: QdrantClient) -> None:
    from qdrant_client import models

    ensure_collection(client, COLLECTION, DIM)
    points = [
        models.PointStruct(
            id=case_id(case),
            vector=list(embed(case.fact)),
            payload=point_payload(TENANT, FACT, case_id(case)),
        )
        for case in SCENARIO
        if case.tier == "qdrant"
    ]
    client.upsert(COLLECTION, points=points, wait=True)


def ask_qdrant(
    client: QdrantClient, conn: psycopg.Connection[Any] | None, case: Case
) -> str | None:
    """The content of the nearest point's row (or the point id when there is no episodic tier)."""
    if not client.collection_exists(COLLECTION):
        return None
    found = client.query_points(
        COLLECTION, query=list(embed(case.request)), query_filter=tenant_selector(TENANT), limit=1
    ).points
    if not found:
        return None
    memory_id = str((found[0].payload or {}).get("memory_id", found[0].id))
    if conn is None:
        return memory_id
    with conn.transaction():
        row = conn.execute(_BY_ID, (TENANT, memory_id)).fetchone()
    return None if row is None else str(row[0])


def clear_qdrant(client: QdrantClient) -> None:
    if client.collection_exists(COLLECTION):
        client.delete_collection(COLLECTION)


# ------------------------------------------------------------------------- running


@dataclass
class Stores:
    """The clients of the tiers to exercise; None for a tier not deployed."""

    redis: Any = None
    prefix: str = ""
    postgresql: Any = None
    qdrant: Any = None


def _each_store(
    stores: Stores,
    redis: Callable[[Any, str], object],
    postgresql: Callable[[Any], object],
    qdrant: Callable[[Any], object],
) -> None:
    """Run the step of each store that is there (Redis's with the key prefix)."""
    if stores.redis is not None:
        redis(stores.redis, stores.prefix)
    if stores.postgresql is not None:
        postgresql(stores.postgresql)
    if stores.qdrant is not None:
        qdrant(stores.qdrant)


def write_scenario(stores: Stores) -> None:
    _each_store(stores, write_redis, write_postgres, write_qdrant)


def ask_scenario(stores: Stores) -> RecallReport:
    report = RecallReport()
    present = {
        "redis": stores.redis is not None,
        "postgresql": stores.postgresql is not None,
        "qdrant": stores.qdrant is not None,
    }
    report.skipped_tiers = [t for t in TIERS if not present[t]]
    for case in SCENARIO:
        if not present[case.tier]:
            continue
        if case.tier == "redis":
            answer = ask_redis(stores.redis, stores.prefix, case)
        elif case.tier == "postgresql":
            answer = ask_postgres(stores.postgresql, case)
        else:
            answer = ask_qdrant(stores.qdrant, stores.postgresql, case)
        expect = case.expect if stores.postgresql is not None or case.tier != "qdrant" else ()
        ok = answer_contains(answer, expect) if expect else answer == case_id(case)
        report.results.append(CaseResult(case, answer, ok))
    return report


def clear_scenario(stores: Stores) -> None:
    _each_store(stores, clear_redis, clear_postgres, clear_qdrant)
