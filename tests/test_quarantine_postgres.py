"""rebuild.quarantine / rebuild.release on the PostgreSQL tier, on a real scratch cluster.

The database is migrated by the application role (it owns memory_items, as in the
deploy) up to 0005_quarantine (after a stand-in for 0004, which another branch
adds); memops connects as an ops role (BYPASSRLS, member of the application role),
as postgresql_ops_user. What these tests prove: once quarantined, the application
role sees none of the tenant's rows and can neither insert, update nor move a row
into it, also on a session opened before, while other tenants work as before
(hostile names and a LIKE look-alike included); memops still sees every row and
pg_dump still works (it fails as the application role, which is why memops needs
the ops role); no row of memory_items changes; release gives the rows back; a
memops that connects as the application role is refused; going down is refused
while a quarantine is recorded.
"""

from __future__ import annotations

import os
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from op_calls import call, scratch_inventory
from psycopg import sql

from memops.exitcodes import EXIT_BAD_INPUT, EXIT_OK
from memops.ops.quarantine import QUARANTINE, RELEASE
from memops.quarantine.postgresql import QUARANTINE_MIGRATION
from memops.schema import owner as audit_owner
from memops.schema.migrate import Migration, MigrationError, discover, migrate
from memops.testing import workload as wl
from memops.testing.pgcluster import ClusterUnavailable, ScratchCluster, scratch_cluster

pytestmark = pytest.mark.integration

PORT = 31704
OPS_ROLE = "qops"
TENANTS = ("acme", "acme:eu", wl.NASTY_TENANTS[7], "percent%_like", "percentX_like", "o'brien")


def migrations() -> list[Migration]:
    """The packaged migrations, 0005_quarantine among them."""
    known = discover()
    assert any(m.version == QUARANTINE_MIGRATION.version for m in known)
    return known


@pytest.fixture(scope="module")
def cluster() -> Iterator[ScratchCluster]:
    try:
        with scratch_cluster("memops_qtest", PORT, app_role="qapp", db_prefix="q") as c:
            yield c
    except ClusterUnavailable as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def ops_password(cluster: ScratchCluster) -> str:
    password = secrets.token_urlsafe(18)
    with cluster.admin() as conn:
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN BYPASSRLS PASSWORD {}").format(
                sql.Identifier(OPS_ROLE), sql.Literal(password)
            )
        )
        conn.execute(
            sql.SQL("GRANT {} TO {}").format(sql.Identifier("qapp"), sql.Identifier(OPS_ROLE))
        )
    return password


@pytest.fixture(scope="module")
def load() -> wl.Workload:
    return wl.generate(seed=5005, tenants=TENANTS, items_per_tenant=6)


@pytest.fixture
def dbname(cluster: ScratchCluster, load: wl.Workload) -> str:
    name = cluster.new_database()
    with cluster.connect(name, autocommit=True) as conn:
        cluster.migrate(conn)
        wl.write_postgres(conn, load)
    return name


def ops_params(cluster: ScratchCluster, dbname: str, password: str) -> dict[str, Any]:
    return {**cluster.app_params(dbname), "user": OPS_ROLE, "password": password}


@pytest.fixture
def app(cluster: ScratchCluster, dbname: str) -> Iterator[psycopg.Connection[Any]]:
    """The application role's session, opened before any quarantine."""
    with cluster.connect(dbname, autocommit=True) as conn:
        conn.execute("SELECT 1")
        yield conn


@pytest.fixture
def ops(
    cluster: ScratchCluster, dbname: str, ops_password: str
) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(**ops_params(cluster, dbname, ops_password), autocommit=True) as conn:
        yield conn


def inventory_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, component: dict[str, Any]
) -> Path:
    postgresql = {"kind": "postgresql", **component}
    return scratch_inventory(tmp_path, monkeypatch, {"postgresql": postgresql})


@pytest.fixture
def inventory(
    tmp_path: Path,
    cluster: ScratchCluster,
    dbname: str,
    ops_password: str,
    monkeypatch: pytest.MonkeyPatch,
) -> Path:
    return inventory_for(tmp_path, monkeypatch, ops_params(cluster, dbname, ops_password))


def run(
    op: Any, inventory: Path, capsys: pytest.CaptureFixture[str], tenant: str, **raw: Any
) -> tuple[int, dict[str, Any], str]:
    raw = {"namespace": tenant, "tier": "postgresql", "dry_run": False, "yes": True} | raw
    return call(op, inventory, capsys, **raw)


def table(conn: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
    return conn.execute("SELECT * FROM memory_items ORDER BY id").fetchall()


def seen(conn: psycopg.Connection[Any], tenant: str) -> int:
    row = conn.execute(
        "SELECT count(*) FROM memory_items WHERE tenant_id = %s", [tenant]
    ).fetchone()
    return int(row[0]) if row else -1


def insert(conn: psycopg.Connection[Any], tenant: str) -> None:
    conn.execute(
        "INSERT INTO memory_items (tenant_id, source_kind, content) VALUES (%s, 'chat', 'new')",
        [tenant],
    )


def pg_dump(
    cluster: ScratchCluster, dbname: str, user: str, password: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            "pg_dump",
            "--data-only",
            "-t",
            "memory_items",
            "-h",
            "127.0.0.1",
            "-p",
            str(cluster.port),
            "-U",
            user,
            dbname,
        ],
        env={**os.environ, "PGPASSWORD": password},
        capture_output=True,
        text=True,
        check=False,
    )


def test_quarantine_hides_the_tenant_from_the_app_role_only(
    cluster: ScratchCluster,
    dbname: str,
    ops_password: str,
    load: wl.Workload,
    app: psycopg.Connection[Any],
    ops: psycopg.Connection[Any],
    inventory: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    per_tenant = {t: seen(app, t) for t in TENANTS}
    assert all(per_tenant.values())
    before = table(ops)
    a_row = load.items_of("acme")[0].id
    b_row = load.items_of("acme:eu")[0].id

    code, document, err = run(QUARANTINE, inventory, capsys, "acme")
    assert code == EXIT_OK, err
    assert document["changes"]["postgresql"] == {"rows": per_tenant["acme"], "role": OPS_ROLE}

    assert seen(app, "acme") == 0  # the session from before the quarantine
    assert app.execute("SELECT count(*) FROM memory_items WHERE id = %s", [a_row]).fetchone() == (
        0,
    )
    assert (
        app.execute("UPDATE memory_items SET content = 'x' WHERE tenant_id = 'acme'").rowcount == 0
    )
    assert app.execute("DELETE FROM memory_items WHERE tenant_id = 'acme'").rowcount == 0
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="row-level security"):
        insert(app, "acme")
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="row-level security"):
        app.execute("UPDATE memory_items SET tenant_id = 'acme' WHERE id = %s", [b_row])
    for other in TENANTS[1:]:
        assert seen(app, other) == per_tenant[other]
    insert(app, "acme:eu")
    app.execute("DELETE FROM memory_items WHERE tenant_id = 'acme:eu' AND content = 'new'")
    assert (
        app.execute("UPDATE memory_items SET judge_at = judge_at WHERE id = %s", [b_row]).rowcount
        == 1
    )

    assert table(ops) == before  # memops sees every row, and none changed
    assert pg_dump(cluster, dbname, OPS_ROLE, ops_password).returncode == 0
    as_app = pg_dump(cluster, dbname, "qapp", cluster.password)
    assert as_app.returncode != 0 and "row-level security" in as_app.stderr

    code, _, err = run(RELEASE, inventory, capsys, "acme")
    assert code == EXIT_OK, err
    assert {t: seen(app, t) for t in TENANTS} == per_tenant
    assert table(ops) == before
    audit = ops.execute(
        "SELECT action, tenant_id FROM execution_audit_log"
        " WHERE action LIKE 'rebuild.%' ORDER BY id"
    ).fetchall()
    assert audit == [("rebuild.quarantine", "acme"), ("rebuild.release", "acme")]


def test_hostile_names_hide_only_themselves(
    app: psycopg.Connection[Any], inventory: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    per_tenant = {t: seen(app, t) for t in TENANTS}
    for tenant in (wl.NASTY_TENANTS[7], "percent%_like", "o'brien"):
        code, _, err = run(QUARANTINE, inventory, capsys, tenant)
        assert code == EXIT_OK, (tenant, err)
        assert seen(app, tenant) == 0
    assert seen(app, "percentX_like") == per_tenant["percentX_like"]
    assert seen(app, "acme") == per_tenant["acme"]
    assert app.execute("SELECT count(*) FROM memory_items").fetchone() == (
        per_tenant["acme"] + per_tenant["acme:eu"] + per_tenant["percentX_like"],
    )
    for tenant in (wl.NASTY_TENANTS[7], "percent%_like", "o'brien"):
        assert run(RELEASE, inventory, capsys, tenant)[0] == EXIT_OK
    assert {t: seen(app, t) for t in TENANTS} == per_tenant


def test_refused_when_memops_would_hide_the_namespace_from_itself(
    cluster: ScratchCluster,
    dbname: str,
    ops: psycopg.Connection[Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    as_app = inventory_for(tmp_path, monkeypatch, cluster.app_params(dbname))
    code, _, err = run(QUARANTINE, as_app, capsys, "acme")
    assert code == EXIT_BAD_INPUT and "row security applies to" in err
    assert ops.execute("SELECT count(*) FROM memory_quarantine").fetchone() == (0,)


def test_down_migration_refused_while_quarantined(
    cluster: ScratchCluster,
    ops: psycopg.Connection[Any],
    inventory: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert run(QUARANTINE, inventory, capsys, "acme")[0] == EXIT_OK
    with cluster.admin() as admin, audit_owner.lent(admin, OPS_ROLE):  # as a deploy migrates
        with pytest.raises(MigrationError, match="memory_quarantine"):
            migrate(ops, 4, migrations=migrations())
        assert run(RELEASE, inventory, capsys, "acme")[0] == EXIT_OK
        migrate(ops, 4, migrations=migrations())
    assert ops.execute("SELECT to_regclass('memory_quarantine')").fetchone() == (None,)
