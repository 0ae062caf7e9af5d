"""rebuild.reindex's engine: Qdrant points rebuilt from memory_items, on a scratch cluster
and the Qdrant stand-in, with the workload's hostile tenants.

What these tests prove: emptying a tenant's points and reindexing gives back the
workload's points (ids, payloads, vectors at float32 precision) and leaves every other
point as it was; a dry run reports the same counts and changes nothing; a corrupted
point is updated, an orphan (a point without its live row) deleted, and a second run
finds nothing to do; a vector size the collection does not take is refused untouched.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from qdrant_client import QdrantClient, models

from memops.rebuild.reindex import ReindexError, per_kind, reindex_namespace
from memops.testing import workload as wl
from memops.testing.pgcluster import ClusterUnavailable, ScratchCluster, scratch_cluster

pytestmark = pytest.mark.integration

HOSTILE = ("acme", "glob*star", "'; DROP TABLE memory_items; --")


@pytest.fixture(scope="module")
def cluster() -> Iterator[ScratchCluster]:
    try:
        with scratch_cluster("memops_reindex", 31630, app_role="reindex", db_prefix="rx") as c:
            yield c
    except ClusterUnavailable as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def load() -> wl.Workload:
    return wl.generate(seed=4242, tenants=2, items_per_tenant=10)


@pytest.fixture(scope="module")
def dbname(cluster: ScratchCluster, load: wl.Workload) -> str:
    name = cluster.new_database()
    with cluster.connect(name, autocommit=True) as conn:
        cluster.migrate(conn)
        wl.write_postgres(conn, load)
    return name


@pytest.fixture
def conn(cluster: ScratchCluster, dbname: str) -> Iterator[psycopg.Connection[Any]]:
    with cluster.connect(dbname, autocommit=True) as connection:
        yield connection


@pytest.fixture
def qdrant(client: QdrantClient, load: wl.Workload) -> QdrantClient:
    for kind in wl.SOURCE_KINDS:
        wl.write_qdrant(client, load, per_kind(kind), kind=kind)
    return client


def every_point(client: QdrantClient) -> dict[tuple[str, str], tuple[dict, list[float]]]:
    """(collection, id) -> (payload, vector) of every point of every collection."""
    out = {}
    for collection in client.get_collections().collections:
        offset = None
        while True:
            records, offset = client.scroll(
                collection.name, limit=256, offset=offset, with_payload=True, with_vectors=True
            )
            for r in records:
                out[(collection.name, str(r.id))] = (r.payload, r.vector)
            if offset is None:
                break
    return out


def empty_tenant(client: QdrantClient, tenant: str) -> None:
    only = models.Filter(
        must=[models.FieldCondition(key="tenant_id", match=models.MatchValue(value=tenant))]
    )
    for kind in wl.SOURCE_KINDS:
        client.delete(per_kind(kind), points_selector=models.FilterSelector(filter=only), wait=True)


def verify_all(client: QdrantClient, load: wl.Workload) -> list[wl.Mismatch]:
    return [m for k in wl.SOURCE_KINDS for m in wl.verify_qdrant(client, load, per_kind(k), kind=k)]


def theirs(points: dict, tenant: str) -> dict:
    return {key: value for key, value in points.items() if value[0]["tenant_id"] != tenant}


@pytest.mark.parametrize("tenant", HOSTILE)
def test_emptied_points_come_back_and_others_stay(conn, qdrant, load, tenant: str) -> None:
    expected = [p for p in load.qdrant if p.payload["tenant_id"] == tenant]
    assert expected, "the workload gives this tenant indexed rows"
    before = every_point(qdrant)
    empty_tenant(qdrant, tenant)
    assert theirs(every_point(qdrant), tenant) == theirs(before, tenant)
    assert len(every_point(qdrant)) == len(before) - len(expected)

    result = reindex_namespace(conn, qdrant, tenant)

    assert (result.created, result.updated, result.deleted) == (len(expected), 0, 0)
    assert result.rows == len(expected)
    assert verify_all(qdrant, load) == []  # every tenant's points equal the workload's
    assert every_point(qdrant) == before  # and nothing else moved


def test_dry_run_counts_and_changes_nothing(conn, qdrant, load) -> None:
    tenant = "acme"
    empty_tenant(qdrant, tenant)
    before = every_point(qdrant)
    result = reindex_namespace(conn, qdrant, tenant, dry_run=True)
    wanted = sum(p.payload["tenant_id"] == tenant for p in load.qdrant)
    assert result.dry_run and (result.created, result.updated, result.deleted) == (wanted, 0, 0)
    assert every_point(qdrant) == before


def test_corrupt_and_orphan_points_are_repaired_then_nothing_to_do(conn, qdrant, load) -> None:
    tenant = "glob*star"
    mine = [p for p in load.qdrant if p.payload["tenant_id"] == tenant]
    bad_vector, bad_payload = mine[0], mine[-1]
    orphan = str(uuid.uuid4())
    qdrant.upsert(
        per_kind(bad_vector.kind),
        points=[
            models.PointStruct(
                id=bad_vector.id, vector=[0.5] * load.vector_dim, payload=bad_vector.payload
            ),
            models.PointStruct(
                id=orphan,
                vector=[0.0] * load.vector_dim,
                payload=wl.point_payload(tenant, bad_vector.kind, orphan),
            ),
        ],
        wait=True,
    )
    wrong = {**bad_payload.payload, "kind": "x"}  # the stand-in has no set_payload
    qdrant.upsert(
        per_kind(bad_payload.kind),
        points=[
            models.PointStruct(id=bad_payload.id, vector=list(bad_payload.vector), payload=wrong)
        ],
        wait=True,
    )
    others = theirs(every_point(qdrant), tenant)

    plan = reindex_namespace(conn, qdrant, tenant, dry_run=True)
    assert (plan.created, plan.updated, plan.deleted) == (0, 2, 1)
    kept = reindex_namespace(conn, qdrant, tenant, prune=False, dry_run=True)
    assert kept.deleted == 0

    done = reindex_namespace(conn, qdrant, tenant)
    assert (done.created, done.updated, done.deleted) == (0, 2, 1)
    assert verify_all(qdrant, load) == []
    assert theirs(every_point(qdrant), tenant) == others
    again = reindex_namespace(conn, qdrant, tenant, dry_run=True)
    assert (again.created, again.updated, again.deleted, again.unchanged) == (0, 0, 0, len(mine))


def test_a_vector_size_the_collection_refuses_changes_nothing(conn, client, load) -> None:
    for kind in wl.SOURCE_KINDS:
        wl.ensure_collection(client, per_kind(kind), load.vector_dim + 1)
    with pytest.raises(ReindexError, match="size"):
        reindex_namespace(conn, client, "acme")
    assert every_point(client) == {}
