"""The workload generator: determinism, hostile tenant names, round trips.

PostgreSQL round trips use the throwaway cluster of ``test_migrations.py``;
Qdrant round trips use qdrant-client's local mode. Redis needs a server, which
the integration suite covers; here only key building and pattern escaping.
"""

from __future__ import annotations

import fnmatch
import itertools
import json
import re
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from qdrant_client import QdrantClient, models

from memops.memory import values as memory_values
from memops.testing import workload as wl

try:  # the module name depends on pytest's import mode
    from test_migrations import PgCluster, cluster_session
except ImportError:  # pragma: no cover
    from tests.test_migrations import PgCluster, cluster_session

NASTY_CHARS = ("*", "?", "[", "]", "'", '"', "\\", " ", ":")


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    with cluster_session() as cluster:
        yield cluster


@pytest.fixture
def pg_conn(pg_cluster: PgCluster) -> Iterator[psycopg.Connection[Any]]:
    with pg_cluster.connect(pg_cluster.new_database(), autocommit=True) as conn:
        pg_cluster.migrate(conn)
        yield conn


@pytest.fixture(scope="module")
def workload() -> wl.Workload:
    return wl.generate(seed=20250101, tenants=3)


# ------------------------------------------------------------------ generation


def test_same_seed_same_workload() -> None:
    assert wl.generate(7) == wl.generate(7)
    assert wl.generate(7) != wl.generate(8)
    assert wl.generate(7, vector_dim=4).qdrant[0].vector != wl.generate(8).qdrant[0].vector


def test_tenants_include_every_nasty_name(workload: wl.Workload) -> None:
    assert set(wl.NASTY_TENANTS) <= set(workload.tenants)
    assert len(workload.tenants) == len(wl.NASTY_TENANTS) + 3
    joined = "".join(workload.tenants)
    for char in NASTY_CHARS:
        assert char in joined
    assert any(not t.isascii() for t in workload.tenants)
    assert "'; DROP TABLE memory_items; --" in workload.tenants
    assert {"café", "cafe\u0301"} <= set(workload.tenants)  # NFC and NFD both present


def test_explicit_tenants_and_validation() -> None:
    data = wl.generate(1, tenants=["only"], items_per_tenant=2, redis_keys_per_tenant=1)
    assert data.tenants == ("only",)
    assert {i.tenant_id for i in data.memory_items} == {"only"}
    assert len(data.memory_items) == 2 and len(data.redis) == 1
    with pytest.raises(ValueError, match="unique"):
        wl.generate(1, tenants=["a", "a"])
    with pytest.raises(ValueError, match="non-empty"):
        wl.generate(1, tenants=[""])
    assert wl.generate(1, tenants=2, nasty=False).tenants[0].startswith("tenant-00-")


def test_every_tenant_has_every_tier(workload: wl.Workload) -> None:
    for tenant in workload.tenants:
        assert sum(e.tenant == tenant for e in workload.redis) == 6
        assert len(workload.items_of(tenant)) == 8


def test_redis_entries(workload: wl.Workload) -> None:
    ttls = {e.ttl for e in workload.redis}
    assert wl.DEFAULT_TTL_S in ttls and min(ttls) < wl.DEFAULT_TTL_S
    assert all(0 < e.ttl <= wl.DEFAULT_TTL_S for e in workload.redis)
    for entry in workload.redis:
        assert entry.key == wl.redis_key(workload.prefix, entry.tenant, entry.type, entry.id)
        value = json.loads(entry.value)
        assert set(value) == {"content", "content_hash", "created_at"}
        assert value["content_hash"] == memory_values.content_hash(value["content"])
        assert entry.value == memory_values.canonical_json(value)
        assert entry.key_id is None
    assert len({e.key for e in workload.redis}) == len(workload.redis)


def test_memory_items_cover_the_lifecycle(workload: wl.Workload) -> None:
    items = workload.memory_items
    assert len({i.id for i in items}) == len(items)
    assert any(i.deleted_at and i.anonymized_at for i in items)
    assert any(i.deleted_at and not i.anonymized_at for i in items)
    assert any(i.judge_at for i in items) and any(not i.judge_at for i in items)
    assert any(i.embedding is None for i in items)
    for item in items:
        if item.anonymized_at:
            assert item.content is None and item.user_id is None and item.embedding is None
        else:
            assert item.content
        if item.embedding is not None:
            assert len(item.embedding) == workload.vector_dim
            assert abs(sum(x * x for x in item.embedding) - 1) < 1e-5


def test_supersede_chains_point_old_to_new(workload: wl.Workload) -> None:
    chains = workload.chains()
    assert sum(len(c) for c in chains) == len(workload.memory_items)
    for tenant in workload.tenants:  # every tenant starts with a three-link chain
        assert any(len(c) >= 3 and c[0].tenant_id == tenant for c in chains)
    for chain in chains:
        assert len({i.tenant_id for i in chain}) == 1
        assert all(old.created_at < new.created_at for old, new in itertools.pairwise(chain))
        assert all(old.judge_at is not None for old in chain[:-1])
        assert chain[-1].superseded_by is None


def test_chain_links_are_facts_and_lone_items_any_kind(workload: wl.Workload) -> None:
    """The judge supersedes facts only: every link of a longer chain is one."""
    assert wl.FACT in wl.SOURCE_KINDS
    chains = workload.chains()
    for chain in chains:
        if len(chain) > 1:
            assert {i.source_kind for i in chain} == {wl.FACT}
    lone_kinds = {c[0].source_kind for c in chains if len(c) == 1}
    assert lone_kinds <= set(wl.SOURCE_KINDS) and len(lone_kinds) > 1


def test_qdrant_points_mirror_live_indexed_items(workload: wl.Workload) -> None:
    by_id = {i.id: i for i in workload.memory_items}
    live_indexed = {
        i.id for i in workload.memory_items if i.indexed_at and i.embedding and not i.deleted_at
    }
    assert {p.id for p in workload.qdrant} == live_indexed
    for point in workload.qdrant:
        item = by_id[point.id]
        assert point.vector == item.embedding
        assert point.payload == {
            "tenant_id": item.tenant_id,
            "kind": item.source_kind,
            "memory_id": item.id,
        }


# ------------------------------------------------------------ keys and patterns


def _redis_glob(pattern: str) -> re.Pattern[str]:
    """Translate a Redis glob (with backslash escapes) into a regex, like stringmatchlen."""
    out, chars = [], iter(pattern)
    for char in chars:
        if char == "\\":
            out.append(re.escape(next(chars)))
        elif char == "*":
            out.append(".*")
        elif char == "?":
            out.append(".")
        elif char == "[":
            raise AssertionError(f"unescaped '[' in {pattern!r}")
        else:
            out.append(re.escape(char))
    return re.compile("".join(out), re.DOTALL)


def test_redis_key_layout() -> None:
    key = wl.redis_key("claude-flow", "acme", "session", "42")
    assert key == "claude-flow:memory:acme:session:42"
    for bad in (("acme", "a:b", "1"), ("acme", "session", "1:2"), ("", "session", "1")):
        with pytest.raises(ValueError):
            wl.redis_key("p", *bad)


@pytest.mark.parametrize("tenant", wl.NASTY_TENANTS)
def test_escape_glob_matches_only_the_literal(tenant: str) -> None:
    escaped = wl.escape_glob(tenant)
    assert _redis_glob(escaped).fullmatch(tenant)
    for other in ("x" + tenant, tenant + "x", tenant.replace("*", "x").replace("?", "y") + "!"):
        if other != tenant:
            assert not _redis_glob(escaped).fullmatch(other)
    # Unescaped, glob characters would match other tenants (why the helper exists).
    if any(c in tenant for c in "*?"):
        assert fnmatch.fnmatchcase(tenant.replace("*", "XX").replace("?", "Y"), tenant)


def test_escape_glob_escapes_each_special_char() -> None:
    assert wl.escape_glob("a*b?c[d]e\\f") == "a\\*b\\?c\\[d\\]e\\\\f"
    assert wl.escape_glob("plain-tenant") == "plain-tenant"


def test_tenant_pattern_and_namespace_filter(workload: wl.Workload) -> None:
    keys = [e.key for e in workload.redis]
    for tenant in workload.tenants:
        pattern = _redis_glob(wl.namespace_pattern(workload.prefix, tenant))
        mine = {e.key for e in workload.redis if e.tenant == tenant}
        matched = {k for k in keys if pattern.fullmatch(k)}
        assert mine <= matched
        assert {k for k in matched if wl.key_in_namespace(k, workload.prefix, tenant)} == mine
    # "acme"'s pattern also sees "acme:eu"'s keys; the namespace check drops them.
    acme_eu = next(e.key for e in workload.redis if e.tenant == "acme:eu")
    assert _redis_glob(wl.namespace_pattern(workload.prefix, "acme")).fullmatch(acme_eu)
    assert not wl.key_in_namespace(acme_eu, workload.prefix, "acme")
    assert wl.key_in_namespace(acme_eu, workload.prefix, "acme:eu")


class _FakeRedis:
    """The few commands the workload uses, with Redis glob semantics for SCAN MATCH.

    Not a Redis substitute: it checks the workload's own logic (escaping, the
    namespace filter, the verifier) until the integration suite runs a server.
    """

    def __init__(self) -> None:
        self.data: dict[str, tuple[bytes, int]] = {}

    def pipeline(self, transaction: bool = True) -> _FakePipeline:
        return _FakePipeline(self)

    def scan_iter(self, match: str) -> Iterator[bytes]:
        pattern = _redis_glob(match)
        return iter([k.encode() for k in list(self.data) if pattern.fullmatch(k)])

    def set(self, key: str, value: str, ex: int) -> None:
        self.data[key] = (value.encode(), ex)

    def get(self, key: str) -> bytes | None:
        return self.data[key][0] if key in self.data else None

    def ttl(self, key: str) -> int:
        return self.data[key][1] if key in self.data else -2


class _FakePipeline:
    def __init__(self, client: _FakeRedis) -> None:
        self.client, self.calls = client, []

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: self.calls.append((name, args, kwargs))

    def execute(self) -> list[Any]:
        return [getattr(self.client, n)(*a, **kw) for n, a, kw in self.calls]


def test_redis_round_trip_through_the_verifier(workload: wl.Workload) -> None:
    client = _FakeRedis()
    assert wl.write_redis(client, workload, batch=7) == len(workload.redis)  # type: ignore[arg-type]
    assert wl.verify_redis(client, workload) == []  # type: ignore[arg-type]
    acme = wl.read_redis(client, workload.prefix, "acme")  # type: ignore[arg-type]
    assert set(acme) == {e.key for e in workload.redis if e.tenant == "acme"}

    first, second, third = workload.redis[:3]
    del client.data[first.key]
    client.data[second.key] = (b"{}", second.ttl)
    client.data[third.key] = (third.value.encode(), -1)
    stray = wl.redis_key(workload.prefix, "glob*star", "session", "stray")
    client.set(stray, "{}", ex=60)
    found = {(m.key, m.problem.split()[0]) for m in wl.verify_redis(client, workload)}  # type: ignore[arg-type]
    assert found == {
        (first.key, "missing"),
        (second.key, "value"),
        (third.key, "ttl"),
        (stray, "unexpected"),
    }


# ------------------------------------------------------------------ PostgreSQL


def test_postgres_round_trip_is_exact(
    pg_conn: psycopg.Connection[Any], workload: wl.Workload
) -> None:
    assert wl.write_postgres(pg_conn, workload) == len(workload.memory_items)
    assert wl.verify_postgres(pg_conn, workload) == []
    back = {i.id: i for i in wl.read_postgres(pg_conn, workload.tenants)}
    assert back == {i.id: i for i in workload.memory_items}
    for item in workload.memory_items:  # byte for byte, whatever the tenant name
        if item.content is not None:
            assert back[item.id].content.encode() == item.content.encode()  # type: ignore[union-attr]
    # Each tenant reads back only its own rows, even the SQL-injection one.
    for tenant in ("'; DROP TABLE memory_items; --", "percent%_like", "acme"):
        assert {i.id for i in wl.read_postgres(pg_conn, [tenant])} == {
            i.id for i in workload.items_of(tenant)
        }


def test_postgres_chains_survive_the_round_trip(
    pg_conn: psycopg.Connection[Any], workload: wl.Workload
) -> None:
    wl.write_postgres(pg_conn, workload)
    rows = pg_conn.execute(
        "WITH RECURSIVE chain AS ("
        "  SELECT id, superseded_by, 1 AS depth FROM memory_items m"
        "  WHERE NOT EXISTS (SELECT 1 FROM memory_items o WHERE o.superseded_by = m.id)"
        "  UNION ALL"
        "  SELECT m.id, m.superseded_by, c.depth + 1 FROM memory_items m"
        "  JOIN chain c ON m.id = c.superseded_by"
        ") SELECT max(depth), count(*) FROM chain"
    ).fetchone()
    assert rows == (max(len(c) for c in workload.chains()), len(workload.memory_items))
    queue = pg_conn.execute(
        "SELECT count(*) FROM memory_items"
        " WHERE judge_at IS NULL AND deleted_at IS NULL AND superseded_by IS NULL"
    ).fetchone()
    expected_queue = sum(
        1
        for i in workload.memory_items
        if i.judge_at is None and i.deleted_at is None and i.superseded_by is None
    )
    assert queue == (expected_queue,)


def test_verify_postgres_reports_differences(
    pg_conn: psycopg.Connection[Any], workload: wl.Workload
) -> None:
    wl.write_postgres(pg_conn, workload)
    target = next(i for i in workload.memory_items if i.content and i.superseded_by)
    pg_conn.execute(
        "UPDATE memory_items SET content = content || ' ', superseded_by = NULL WHERE id = %s",
        (target.id,),
    )
    extra = replace(workload.memory_items[0], id="00000000-0000-4000-8000-000000000000")
    changed = replace(workload, memory_items=(*workload.memory_items, extra))
    problems = {(m.key, m.problem.split()[0]) for m in wl.verify_postgres(pg_conn, changed)}
    assert problems == {
        (target.id, "content"),
        (target.id, "superseded_by"),
        (extra.id, "missing"),
    }


def test_write_postgres_is_atomic(pg_conn: psycopg.Connection[Any], workload: wl.Workload) -> None:
    broken = replace(workload, memory_items=(*workload.memory_items, workload.memory_items[0]))
    with pytest.raises(psycopg.errors.UniqueViolation):
        wl.write_postgres(pg_conn, broken)
    assert pg_conn.execute("SELECT count(*) FROM memory_items").fetchone() == (0,)


# ---------------------------------------------------------------------- Qdrant


@pytest.fixture
def qdrant() -> Iterator[QdrantClient]:
    client = QdrantClient(location=":memory:")
    yield client
    client.close()


@pytest.mark.filterwarnings("ignore:Payload indexes have no effect")
def test_qdrant_round_trip_is_exact(qdrant: QdrantClient, workload: wl.Workload) -> None:
    assert wl.write_qdrant(qdrant, workload, "memory") == len(workload.qdrant)
    assert wl.verify_qdrant(qdrant, workload, "memory") == []
    back = wl.read_qdrant(qdrant, "memory", workload.tenants)
    assert back == {p.id: p for p in workload.qdrant}
    assert wl.read_qdrant(qdrant, "memory", ["glob*star"]).keys() == {
        p.id for p in workload.qdrant if p.payload["tenant_id"] == "glob*star"
    }


@pytest.mark.filterwarnings("ignore:Payload indexes have no effect")
def test_qdrant_collection_per_kind(qdrant: QdrantClient, workload: wl.Workload) -> None:
    for kind in wl.SOURCE_KINDS:
        wl.write_qdrant(qdrant, workload, f"memory-{kind}", kind=kind)
    for kind in wl.SOURCE_KINDS:
        assert wl.verify_qdrant(qdrant, workload, f"memory-{kind}", kind=kind) == []
        assert qdrant.count(f"memory-{kind}").count == sum(p.kind == kind for p in workload.qdrant)


@pytest.mark.filterwarnings("ignore:Payload indexes have no effect")
def test_verify_qdrant_reports_differences(qdrant: QdrantClient, workload: wl.Workload) -> None:
    wl.write_qdrant(qdrant, workload, "memory")
    first, second = workload.qdrant[0], workload.qdrant[1]
    qdrant.delete("memory", points_selector=models.PointIdsList(points=[first.id]), wait=True)
    qdrant.set_payload("memory", {"tenant_id": "intruder"}, points=[second.id], wait=True)
    mismatches = wl.verify_qdrant(qdrant, workload, "memory")
    assert [(m.key, m.problem.split()[0]) for m in mismatches] == [
        (first.id, "missing"),
        (second.id, "payload"),  # found by id although its tenant no longer matches
    ]


def test_timestamps_are_deterministic_and_aware(workload: wl.Workload) -> None:
    first = workload.memory_items[0]
    assert first.created_at.utcoffset() == timedelta(0)
    assert first.created_at >= wl.BASE_TIME
