"""The drill's cross-tier check, on a real PostgreSQL cluster and the workload's data."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from memops.backup.cross_tier import check_cross_tier
from memops.testing import workload as wl

try:  # the module name depends on pytest's import mode
    from test_migrations import PgCluster, cluster_session
except ImportError:  # pragma: no cover
    from tests.test_migrations import PgCluster, cluster_session


@pytest.fixture(scope="module")
def pg_cluster() -> Iterator[PgCluster]:
    with cluster_session() as cluster:
        yield cluster


@pytest.fixture
def conn(pg_cluster: PgCluster) -> Iterator[psycopg.Connection[Any]]:
    with pg_cluster.connect(pg_cluster.new_database(), autocommit=True) as connection:
        pg_cluster.migrate(connection)
        yield connection


def test_the_workload_tiers_agree_and_a_lost_point_is_named(
    conn: psycopg.Connection[Any],
) -> None:
    load = wl.generate(seed=4242, tenants=3)
    wl.write_postgres(conn, load)
    points = [(p.id, p.payload["tenant_id"]) for p in load.qdrant]
    report = check_cross_tier(conn, points)
    assert report.ok, report.summary()
    assert report.points == report.rows == len(points)

    lost = points[0]
    foreign = ("00000000-0000-4000-8000-000000000001", "nobody")
    moved = (points[1][0], "another-tenant")  # same id, wrong tenant: both sides mismatch
    report = check_cross_tier(conn, [foreign, moved, *points[2:]])
    assert not report.ok
    assert set(report.rows_without_point) == {lost[0], points[1][0]}
    assert set(report.points_without_row) == {foreign[0], points[1][0]}
    assert "without their row" in report.summary() and lost[0] in report.summary()
