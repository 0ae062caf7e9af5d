"""PostgreSQL tier against a real, throwaway PostgreSQL 15 cluster (port 31501)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from memops.backup.artifacts import BackupError, RestoreRefused
from memops.backup.manifest import FileRecord
from memops.backup.postgresql.tier import PostgresTier, check_pgdump, side_database, side_prefix
from memops.schema import owner as audit_owner
from memops.testing.pgcluster import ClusterUnavailable, ScratchCluster, scratch_cluster

pytestmark = pytest.mark.integration

# COPY text escapes a backslash, tab and newline: a name holding them must still match itself.
CONTROL = "back\\slash\ttab\nline"
TENANTS = ("acme", "acme:eu", "glob*star", "[brackets]", "o'brien", CONTROL)


@pytest.fixture(scope="module")
def cluster() -> Iterator[ScratchCluster]:
    try:
        with scratch_cluster("memops-bkpg-test", 31501, app_role="bkpg", db_prefix="bkpg") as c:
            yield c
    except ClusterUnavailable as exc:
        pytest.skip(str(exc))


@pytest.fixture
def tier(cluster: ScratchCluster) -> PostgresTier:
    db = cluster.new_database()
    with cluster.connect(db, autocommit=True) as conn:
        cluster.migrate(conn)
        for tenant in TENANTS:
            ids = []
            for i in range(5):
                row = conn.execute(
                    "INSERT INTO memory_items (tenant_id, source_kind, content) "
                    "VALUES (%s, 'chat', %s) RETURNING id",
                    (tenant, f"{tenant} item {i}"),
                ).fetchone()
                ids.append(row[0])
            conn.execute(  # a supersede chain inside the tenant
                "UPDATE memory_items SET superseded_by = %s WHERE id = %s", (ids[1], ids[0])
            )
            conn.execute(
                "INSERT INTO execution_audit_log (actor, action, tenant_id) VALUES ('t', 'a', %s)",
                (tenant,),
            )
    return PostgresTier(
        cluster.ops_target(db), admin=cluster.admin_target(), owner=cluster.app_role
    )


def test_tenant_restore_touches_only_that_tenant(tier: PostgresTier, tmp_path: Path) -> None:
    before = tier.tenant_summaries()
    artifact = tier.backup(tmp_path)
    assert not any("acme" in name or "glob" in name for name in artifact.files)
    assert artifact.tenants == before
    cluster_conn = tier._connect()
    with cluster_conn as conn:
        conn.execute("UPDATE memory_items SET superseded_by = NULL WHERE tenant_id LIKE 'acme%'")
        conn.execute("DELETE FROM memory_items WHERE tenant_id LIKE 'acme%'")
    report = tier.restore(tmp_path, artifact, tenants=["acme"])
    after = tier.tenant_summaries()
    assert after["acme"] == before["acme"]
    assert "acme:eu" not in after  # only the restored tenant came back
    for tenant in ("glob*star", "[brackets]", "o'brien"):
        assert after[tenant] == before[tenant]
    assert report["tenants"]["acme"]["rows_restored"] == 5


def test_tenant_with_escaped_characters_restores_from_the_whole_dump(
    tier: PostgresTier, tmp_path: Path
) -> None:
    before = tier.tenant_summaries()
    artifact = tier.backup(tmp_path)
    assert artifact.scope == "full"
    with tier._connect() as conn:
        conn.execute("UPDATE memory_items SET content = 'damaged' WHERE tenant_id = %s", (CONTROL,))
    report = tier.restore(tmp_path, artifact, tenants=[CONTROL])
    assert report["tenants"][CONTROL]["rows_restored"] == 5
    assert tier.tenant_summaries() == before


def test_tenant_restore_refuses_a_set_that_disagrees_with_its_manifest(
    tier: PostgresTier, tmp_path: Path
) -> None:
    artifact = tier.backup(tmp_path)
    with tier._connect() as conn:
        conn.execute("UPDATE memory_items SET content = 'live' WHERE tenant_id = 'acme'")
    live = tier.tenant_summaries()
    wrong_count = replace(artifact.tenants["acme"], count=6)
    tampered = replace(artifact, tenants={**artifact.tenants, "acme": wrong_count})
    with pytest.raises(RestoreRefused, match="6"):
        tier.restore(tmp_path, tampered, tenants=["acme"])
    wrong_sum = replace(artifact.tenants["acme"], checksum="0" * 64)
    tampered = replace(artifact, tenants={**artifact.tenants, "acme": wrong_sum})
    with pytest.raises(BackupError, match="do not match"):
        tier.restore(tmp_path, tampered, tenants=["acme"])
    assert tier.tenant_summaries() == live  # both refusals rolled back


def test_whole_restore_swaps_in_and_keeps_old(tier: PostgresTier, tmp_path: Path) -> None:
    before = tier.tenant_summaries()
    artifact = tier.backup(tmp_path)
    with tier._connect() as conn:
        conn.execute("UPDATE memory_items SET content = 'changed' WHERE tenant_id = 'o''brien'")
    report = tier.restore(tmp_path, artifact, set_id="s1")
    assert tier.tenant_summaries() == before
    assert report["old_database"].startswith(side_prefix(tier.target.dbname, "pre") + "s1_")
    with tier._connect() as conn:  # pg_restore --no-owner made the app own it; given back
        assert audit_owner.audit_log_owner(conn) == audit_owner.AUDIT_OWNER
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("DELETE FROM execution_audit_log")
        owners = conn.execute(
            "SELECT pg_get_userbyid(relowner) FROM pg_class"
            " WHERE relname IN ('memory_items', 'memory_quarantine')"
            " UNION ALL SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = 'public'"
        ).fetchall()
        assert owners == [(audit_owner.AUDIT_OWNER,)] * 3  # 0007's owners, also given back
        for statement in (
            "ALTER TABLE memory_items DISABLE ROW LEVEL SECURITY",
            "DROP TABLE execution_audit_log",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege), conn.transaction():
                conn.execute(statement)


def _owner_and_acl(cluster: ScratchCluster, db: str) -> tuple[str, str]:
    """The database's owner and its database-level grants, as the catalog holds them."""
    with cluster.admin() as conn:
        row = conn.execute(
            "SELECT pg_get_userbyid(datdba), datacl::text FROM pg_database WHERE datname = %s",
            (db,),
        ).fetchone()
    return row[0], row[1]


def _app_uses_its_memory(cluster: ScratchCluster, db: str) -> None:
    with cluster.connect(db, autocommit=True) as app:
        app.execute(
            "INSERT INTO memory_items (tenant_id, source_kind, content) VALUES ('new', 'chat', 'n')"
        )
        assert app.execute("UPDATE memory_items SET content = 'm' WHERE tenant_id = 'new'").rowcount
        assert app.execute(
            "SELECT content FROM memory_items WHERE tenant_id = 'new'"
        ).fetchall() == [("m",)]
        assert app.execute("SELECT count(*) FROM memory_items").fetchone()[0] > 1  # restored rows
        app.execute("INSERT INTO execution_audit_log (actor, action) VALUES ('app', 'a')")
        assert app.execute("DELETE FROM memory_items WHERE tenant_id = 'new'").rowcount == 1


def test_whole_restore_keeps_the_database_out_of_the_app_roles_hands(
    tier: PostgresTier, cluster: ScratchCluster, tmp_path: Path
) -> None:
    """The swapped-in database has the owner and grants of the one it replaced (the deploy's,
    from migration 0008 on): the app role connects and uses its memory, but cannot drop it."""
    db = tier.target.dbname
    live = _owner_and_acl(cluster, db)
    assert live[0] == audit_owner.AUDIT_OWNER
    artifact = tier.backup(tmp_path)
    tier.restore(tmp_path, artifact, set_id="s1", drop_old=True)
    assert _owner_and_acl(cluster, db) == live
    with cluster.connect("postgres", autocommit=True) as elsewhere:  # no session on db
        for statement in ("DROP DATABASE {}", "ALTER DATABASE {} OWNER TO {}"):
            query = sql.SQL(statement).format(sql.Identifier(db), sql.Identifier(cluster.app_role))
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="must be owner"):
                elsewhere.execute(query)
    _app_uses_its_memory(cluster, db)
    refused = pytest.raises(psycopg.errors.InsufficientPrivilege)
    with cluster.connect(db, autocommit=True) as app, refused:
        app.execute("CREATE TABLE app_scratch (x int)")


def test_whole_restore_of_a_set_before_0008_leaves_the_database_to_the_app_role(
    cluster: ScratchCluster, tmp_path: Path
) -> None:
    """Below 0008 the app role's rights come from owning the database: it keeps it, as the
    deploy leaves it at that version, and the next migration hands it over."""
    db = cluster.new_database()
    with cluster.connect(db, autocommit=True) as conn:
        cluster.migrate(conn, 7)
        conn.execute(
            "INSERT INTO memory_items (tenant_id, source_kind, content) VALUES ('old', 'chat', 'o')"
        )
    tier = PostgresTier(
        cluster.ops_target(db), admin=cluster.admin_target(), owner=cluster.app_role
    )
    live = _owner_and_acl(cluster, db)
    assert live[0] == cluster.app_role
    tier.restore(tmp_path, tier.backup(tmp_path), set_id="s7", drop_old=True)
    assert _owner_and_acl(cluster, db) == live
    _app_uses_its_memory(cluster, db)
    with cluster.connect(db, autocommit=True) as conn:
        assert cluster.migrate(conn).applied == [8]
    assert _owner_and_acl(cluster, db)[0] == audit_owner.AUDIT_OWNER
    _app_uses_its_memory(cluster, db)


def test_corrupted_dump_is_refused(tier: PostgresTier, tmp_path: Path) -> None:
    artifact = tier.backup(tmp_path)
    name = next(f for f, k in artifact.kinds.items() if k == "pgdump")
    path = tmp_path / name
    record = FileRecord(name, "postgresql", "pgdump", "zstd", path.stat().st_size, "")
    check_pgdump(path, record)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(BackupError):
        check_pgdump(path, record)


def test_killed_whole_restore_leaves_live_db_intact(
    tier: PostgresTier, cluster: ScratchCluster, tmp_path: Path
) -> None:
    import os
    import pickle
    import signal
    import subprocess
    import sys
    import time

    with tier._connect() as conn:
        conn.execute(
            "INSERT INTO memory_items (tenant_id, source_kind, content) "
            "SELECT 'bulk', 'chat', repeat(md5(g::text), 40) FROM generate_series(1, 200000) g"
        )
    before = tier.tenant_summaries()
    artifact = tier.backup(tmp_path)
    (tmp_path / "args.pkl").write_bytes(pickle.dumps((tier, artifact)))
    script = (
        "import pickle,sys; from pathlib import Path; p=Path(sys.argv[1]);"
        "t,a=pickle.loads((p/'args.pkl').read_bytes()); t.restore(p,a)"
    )
    proc = subprocess.Popen([sys.executable, "-c", script, str(tmp_path)])
    with cluster.admin() as conn:
        for _ in range(600):
            busy = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname LIKE %s",
                (tier.target.dbname + "_restore_%",),
            ).fetchone()[0]
            if busy or proc.poll() is not None:
                break
            time.sleep(0.05)
    assert proc.poll() is None, "the restore ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert tier.tenant_summaries() == before


def _allows_connections(cluster: ScratchCluster, db: str) -> bool:
    with cluster.admin() as conn:
        row = conn.execute("SELECT datallowconn FROM pg_database WHERE datname = %s", (db,))
        return bool(row.fetchone()[0])


def _databases(cluster: ScratchCluster) -> set[str]:
    with cluster.admin() as conn:
        return {name for (name,) in conn.execute("SELECT datname FROM pg_database").fetchall()}


def test_the_same_set_restored_twice_swaps_in_both_times(
    tier: PostgresTier, cluster: ScratchCluster, tmp_path: Path
) -> None:
    """Each restore's kept database has a name of its own: the second is no collision."""
    before = tier.tenant_summaries()
    artifact = tier.backup(tmp_path)
    first = tier.restore(tmp_path, artifact, set_id="20261207T000000Z-abcd")
    with tier._connect() as conn:
        conn.execute("UPDATE memory_items SET content = 'changed' WHERE tenant_id = 'acme'")
    second = tier.restore(tmp_path, artifact, set_id="20261207T000000Z-abcd")
    assert first["old_database"] != second["old_database"]
    assert {first["old_database"], second["old_database"]} <= _databases(cluster)
    assert tier.tenant_summaries() == before
    assert _allows_connections(cluster, tier.target.dbname)


def test_a_failed_swap_leaves_the_live_database_as_it_was_and_open(
    tier: PostgresTier, cluster: ScratchCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The name the old database was to take exists: the swap fails, and nothing changed."""
    import memops.backup.postgresql.tier as module

    artifact = tier.backup(tmp_path)
    with tier._connect() as conn:
        conn.execute("UPDATE memory_items SET content = 'live' WHERE tenant_id = 'acme'")
    live = tier.tenant_summaries()
    taken = cluster.new_database()
    real = module.side_database
    monkeypatch.setattr(
        module,
        "side_database",
        lambda db, kind, tag: taken if kind == "pre" else real(db, kind, tag),
    )
    before = _databases(cluster)
    with pytest.raises(psycopg.errors.DuplicateDatabase):
        tier.restore(tmp_path, artifact, set_id="s1")
    assert _allows_connections(cluster, tier.target.dbname)
    assert tier.tenant_summaries() == live  # the live database, unchanged, connects
    assert _databases(cluster) == before  # the loaded copy was dropped too


def test_side_database_names_fit_and_stay_apart() -> None:
    long_db = "m" * 40 + "é" * 20  # 80 bytes: PostgreSQL would cut it at 63
    names = {side_database(long_db, "pre", "20261207T000000Z-abcd") for _ in range(50)}
    assert len(names) == 50
    for name in names:
        assert len(name.encode()) <= 63
        assert name.startswith(side_prefix(long_db, "pre"))
    assert side_database("memops", "drill", "t").startswith("memops_drill_t_")


def test_a_killed_drills_scratch_database_goes_with_the_next_verified_set(
    tier: PostgresTier, cluster: ScratchCluster, tmp_path: Path
) -> None:
    artifact = tier.backup(tmp_path)
    with tier.scratch_restore(tmp_path, artifact) as copy:
        assert copy.summaries
        drills = {
            n for n in _databases(cluster) if n.startswith(side_prefix(tier.target.dbname, "drill"))
        }
        assert len(drills) == 1
    assert not drills & _databases(cluster)  # a drill that ends drops its copy
    left = side_database(tier.target.dbname, "drill", "killed")
    with cluster.admin() as conn:  # what a drill killed with SIGKILL leaves
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(left)))
    done = tier.after_verified_set(artifact)
    assert left in done["dropped"]
    assert left not in _databases(cluster)
