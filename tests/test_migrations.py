"""Migrations and their runner, against a real, throwaway PostgreSQL 15 cluster.

The app role migrates with the audit owner lent (the ``lent`` fixture, as the
deploy does); the ``app`` fixture takes it back to test what the application
role alone can do to the audit log (INSERT and SELECT, nothing else).

The cluster ``memops-mig-test`` (port 31432) lives in a temporary directory and
is dropped at the end of the session. Each test gets its own database, owned by
an unprivileged role that logs in with a password over TCP, as in production.
``tests/test_workload.py`` shares the same cluster through ``cluster_session``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from memops.cli import migrate as cli
from memops.memory.values import content_hash
from memops.schema import migrate as runner
from memops.schema import owner as audit_owner
from memops.schema.migrate import MigrationError, current_version, discover, migrate
from memops.testing.pgcluster import ClusterUnavailable, ScratchCluster, scratch_cluster

CLUSTER = "memops-mig-test"
PORT = 31432
APP_ROLE = "memops_mig"
TABLES = ("memory_items", "execution_audit_log")
FUNCTIONS = ("execution_audit_log_append_only", "memory_items_no_truncate")
LATEST = 8
ALL = list(range(1, LATEST + 1))


# ------------------------------------------------------------------- the cluster

PgCluster = ScratchCluster
_active: PgCluster | None = None


@contextlib.contextmanager
def cluster_session() -> Iterator[PgCluster]:
    """Start the test cluster, or reuse it when another test module already did."""
    global _active
    if _active is not None:
        yield _active
        return
    try:
        with scratch_cluster(CLUSTER, PORT, app_role=APP_ROLE, db_prefix="mig") as cluster:
            _active = cluster
            try:
                yield cluster
            finally:
                _active = None
    except ClusterUnavailable as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    with cluster_session() as cluster:
        yield cluster


@pytest.fixture
def dbname(pg_cluster: PgCluster) -> str:
    return pg_cluster.new_database()


@pytest.fixture
def lent(pg_cluster: PgCluster) -> Iterator[None]:
    """The app role is a member of the audit owner during the test, as during a deploy's
    migration (0004 up and down need it); it is not once the test ends."""
    with pg_cluster.admin() as admin, audit_owner.lent(admin, APP_ROLE):
        yield


@pytest.fixture
def conn(pg_cluster: PgCluster, dbname: str, lent: None) -> Iterator[psycopg.Connection[Any]]:
    with pg_cluster.connect(dbname, autocommit=True) as connection:
        yield connection


# --------------------------------------------------------------------- helpers


def _relations(conn: psycopg.Connection[Any]) -> set[str]:
    rows = conn.execute(
        "SELECT relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = 'public'"
    ).fetchall()
    return {name for (name,) in rows}


def _functions(conn: psycopg.Connection[Any]) -> set[str]:
    rows = conn.execute(
        "SELECT proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace"
        " WHERE n.nspname = 'public'"
    ).fetchall()
    return {name for (name,) in rows}


def _copy_migrations(tmp_path: Path) -> Path:
    target = tmp_path / "migrations"
    shutil.copytree(Path(runner.__file__).with_name("migrations"), target)
    return target


def _insert_audit(conn: psycopg.Connection[Any]) -> None:
    conn.execute(
        "INSERT INTO execution_audit_log (actor, action, tenant_id, details)"
        " VALUES (%s, %s, %s, %s::jsonb)",
        ("tester", "backup.create", "o'brien", '{"result": "ok"}'),
    )


# ------------------------------------------------------------------ discovery


def test_discover_finds_versions_in_order() -> None:
    migrations = discover()
    assert [(m.version, m.name) for m in migrations] == [
        (1, "memory_items"),
        (2, "execution_audit_log"),
        (3, "memory_items_no_truncate"),
        (4, "audit_owner"),
        (5, "quarantine"),
        (6, "memory_items_content_hash"),
        (7, "data_owner"),
        (8, "database_owner"),
    ]
    assert all(len(m.checksum) == 64 for m in migrations)
    assert runner.latest_version() == LATEST


def test_discover_rejects_gaps_and_missing_down(tmp_path: Path) -> None:
    directory = _copy_migrations(tmp_path)
    (directory / "0002_execution_audit_log.down.sql").unlink()
    with pytest.raises(MigrationError, match="has no down file"):
        discover(directory)
    for path in directory.glob("0002_*"):
        path.unlink()
    with pytest.raises(MigrationError, match="gap"):
        discover(directory)


# ------------------------------------------------------------------ up and down


def test_up_to_latest_creates_schema(conn: psycopg.Connection[Any]) -> None:
    assert current_version(conn) == 0
    report = migrate(conn)
    assert report.as_dict() == {
        "changed": True,
        "from": 0,
        "to": LATEST,
        "applied": ALL,
        "reverted": [],
    }
    assert current_version(conn) == LATEST
    relations = _relations(conn)
    assert {*TABLES, "schema_migrations"} <= relations
    assert {
        "memory_items_judge_queue_idx",
        "memory_items_retention_idx",
        "memory_items_tenant_created_idx",
        "memory_items_tenant_id_id_key",
    } <= relations
    indexdefs = dict(
        conn.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'memory_items'"
        ).fetchall()
    )
    assert indexdefs["memory_items_judge_queue_idx"].endswith(
        "WHERE ((judge_at IS NULL) AND (deleted_at IS NULL) AND (superseded_by IS NULL))"
    )
    assert indexdefs["memory_items_retention_idx"].endswith(
        "WHERE ((deleted_at IS NOT NULL) AND (anonymized_at IS NULL))"
    )
    recorded = conn.execute(
        "SELECT version, name, checksum FROM schema_migrations ORDER BY version"
    ).fetchall()
    assert recorded == [(m.version, m.name, m.checksum) for m in discover()]


def test_second_run_changes_nothing(conn: psycopg.Connection[Any]) -> None:
    migrate(conn)
    report = migrate(conn)
    assert report.as_dict() == {
        "changed": False,
        "from": LATEST,
        "to": LATEST,
        "applied": [],
        "reverted": [],
    }
    assert migrate(conn, LATEST).changed is False


def test_down_to_zero_and_back_up(conn: psycopg.Connection[Any]) -> None:
    migrate(conn)
    report = migrate(conn, 0)
    assert (report.changed, report.from_version, report.to_version) == (True, LATEST, 0)
    assert report.reverted == ALL[::-1]
    assert not set(TABLES) & _relations(conn)
    assert not set(FUNCTIONS) & _functions(conn)
    assert current_version(conn) == 0
    assert migrate(conn, 0).changed is False
    assert migrate(conn).applied == ALL
    assert set(TABLES) <= _relations(conn)


def test_partial_up_and_down(conn: psycopg.Connection[Any]) -> None:
    assert migrate(conn, 1).applied == [1]
    assert "execution_audit_log" not in _relations(conn)
    assert migrate(conn, 2).applied == [2]
    assert migrate(conn, 1).reverted == [2]
    assert current_version(conn) == 1


def test_down_refuses_to_drop_data_without_permission(conn: psycopg.Connection[Any]) -> None:
    migrate(conn)
    _insert_audit(conn)
    with pytest.raises(MigrationError) as excinfo:
        migrate(conn, 0)
    message = str(excinfo.value)
    assert "reverting 0002_execution_audit_log failed" in message
    assert "refusing to drop execution_audit_log" in message
    assert "--allow-data-loss" in message
    assert current_version(conn) == 2  # 0004 and 0003 were reverted, 0002 rolled back whole
    assert "execution_audit_log" in _relations(conn)

    report = migrate(conn, 0, allow_data_loss=True)
    assert report.reverted == [2, 1]
    assert not set(TABLES) & _relations(conn)


def test_dry_run_changes_nothing(conn: psycopg.Connection[Any]) -> None:
    report = migrate(conn, dry_run=True)
    assert report.as_dict() == {
        "changed": True,
        "from": 0,
        "to": LATEST,
        "applied": ALL,
        "reverted": [],
        "dry_run": True,
    }
    assert _relations(conn) == set()
    migrate(conn)
    assert migrate(conn, 1, dry_run=True).reverted == ALL[:0:-1]
    assert current_version(conn) == LATEST


def test_failed_migration_rolls_back_only_itself(
    conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    directory = _copy_migrations(tmp_path)
    up = directory / "0002_execution_audit_log.up.sql"
    up.write_text(up.read_text() + "\nSELECT no_such_function();\n")
    with pytest.raises(MigrationError, match=r"applying 0002_execution_audit_log failed.*\[1\]"):
        migrate(conn, migrations=discover(directory))
    assert current_version(conn) == 1
    assert "execution_audit_log" not in _relations(conn)
    assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE


# ------------------------------------------------------------------ refusals


def test_edited_migration_is_refused(conn: psycopg.Connection[Any], tmp_path: Path) -> None:
    directory = _copy_migrations(tmp_path)
    migrate(conn, 2, migrations=discover(directory))
    up = directory / "0001_memory_items.up.sql"
    up.write_text(up.read_text() + "\n-- edited after apply\n")
    with pytest.raises(MigrationError, match="edited after they were applied: 0001_memory_items "):
        migrate(conn, migrations=discover(directory))
    assert current_version(conn) == 2  # nothing ran


def test_line_endings_do_not_change_the_checksum(tmp_path: Path) -> None:
    directory = _copy_migrations(tmp_path)
    up = directory / "0001_memory_items.up.sql"
    up.write_bytes(up.read_bytes().replace(b"\n", b"\r\n"))
    assert discover(directory)[0].checksum == discover()[0].checksum


def test_database_newer_than_code_is_refused(conn: psycopg.Connection[Any]) -> None:
    migrate(conn)
    with pytest.raises(
        MigrationError, match=f"schema version {LATEST}, newer than this code knows"
    ):
        migrate(conn, migrations=discover()[:2])
    with pytest.raises(MigrationError, match="target version 9 is unknown"):
        migrate(conn, 9)


def test_connection_inside_a_transaction_is_refused(
    pg_cluster: PgCluster, dbname: str, lent: None
) -> None:
    with pg_cluster.connect(dbname) as connection:  # not autocommit
        connection.execute("SELECT 1")
        with pytest.raises(MigrationError, match="inside a transaction"):
            migrate(connection)
        connection.rollback()
        assert migrate(connection).applied == ALL  # also works without autocommit
        assert current_version(connection) == LATEST


# ------------------------------------------------------------ append-only audit


@pytest.mark.parametrize(
    ("statement", "operation"),
    [
        ("UPDATE execution_audit_log SET actor = 'someone else'", "UPDATE"),
        ("DELETE FROM execution_audit_log", "DELETE"),
        ("TRUNCATE execution_audit_log", "TRUNCATE"),
    ],
)
def test_audit_log_is_append_only(
    conn: psycopg.Connection[Any], statement: str, operation: str
) -> None:
    """The triggers' layer: with the owner's privileges (lent here) the change is refused."""
    migrate(conn)
    _insert_audit(conn)
    with pytest.raises(psycopg.errors.RestrictViolation) as excinfo:
        conn.execute(statement)
    assert str(excinfo.value.diag.message_primary) == (
        f"execution_audit_log is append-only: {operation} is not allowed"
    )
    assert conn.execute("SELECT count(*) FROM execution_audit_log").fetchone() == (1,)


def test_audit_log_triggers_fire_in_replica_mode(pg_cluster: PgCluster, dbname: str) -> None:
    with pg_cluster.connect(dbname, autocommit=True) as app:
        pg_cluster.migrate(app)
        _insert_audit(app)
    with pg_cluster.admin(dbname) as admin:  # only a superuser may change the role
        admin.execute("SET session_replication_role = replica")
        with pytest.raises(psycopg.errors.RestrictViolation, match="append-only"):
            admin.execute("DELETE FROM execution_audit_log")


# ---------------------------------------------------------------- audit owner

AUDIT_TRIGGERS = [
    ("execution_audit_log_no_truncate", "A"),  # A: ENABLE ALWAYS
    ("execution_audit_log_no_update_delete", "A"),
]


@pytest.fixture
def app(pg_cluster: PgCluster, dbname: str) -> Iterator[psycopg.Connection[Any]]:
    """An app-role session on a database migrated as the deploy does it: the audit owner
    is lent for the migration and taken back, then the application writes one audit row."""
    with pg_cluster.connect(dbname, autocommit=True) as connection:
        pg_cluster.migrate(connection)
        _insert_audit(connection)
        yield connection


def _audit_triggers(pg_cluster: PgCluster, dbname: str) -> list[tuple[str, str]]:
    with pg_cluster.admin(dbname) as admin:
        return admin.execute(
            "SELECT tgname, tgenabled FROM pg_trigger"
            " WHERE tgrelid = 'execution_audit_log'::regclass AND NOT tgisinternal ORDER BY 1"
        ).fetchall()


@pytest.mark.parametrize(
    "statement",
    [
        "ALTER TABLE execution_audit_log DISABLE TRIGGER execution_audit_log_no_update_delete",
        "ALTER TABLE execution_audit_log DISABLE TRIGGER execution_audit_log_no_truncate",
        "ALTER TABLE execution_audit_log DISABLE TRIGGER ALL",
        "DROP TRIGGER execution_audit_log_no_update_delete ON execution_audit_log",
        "DROP TRIGGER execution_audit_log_no_truncate ON execution_audit_log",
        "DELETE FROM execution_audit_log",
        "UPDATE execution_audit_log SET actor = 'someone else'",
        "TRUNCATE execution_audit_log",
        f"ALTER TABLE execution_audit_log OWNER TO {APP_ROLE}",
        "CREATE OR REPLACE FUNCTION execution_audit_log_append_only() RETURNS trigger"
        " LANGUAGE plpgsql AS $$ BEGIN RETURN OLD; END $$",
        f"SET ROLE {audit_owner.AUDIT_OWNER}",
        "SELECT setval('execution_audit_log_id_seq', 1)",
    ],
)
def test_the_app_role_cannot_disable_drop_or_bypass_the_audit_trail(
    app: psycopg.Connection[Any], pg_cluster: PgCluster, dbname: str, statement: str
) -> None:
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        app.execute(statement)
    assert _audit_triggers(pg_cluster, dbname) == AUDIT_TRIGGERS
    assert app.execute("SELECT count(*) FROM execution_audit_log").fetchone() == (1,)


@pytest.mark.parametrize(
    "statement",
    [
        "DROP TABLE execution_audit_log",
        "DROP TABLE memory_items",
        "TRUNCATE memory_items",
        "ALTER TABLE memory_items DISABLE ROW LEVEL SECURITY",
        "ALTER TABLE memory_items NO FORCE ROW LEVEL SECURITY",
        "DROP POLICY memory_items_outside_quarantine ON memory_items",
        "DROP TRIGGER memory_items_no_truncate ON memory_items",
        f"ALTER TABLE memory_items OWNER TO {APP_ROLE}",
        "ALTER TABLE memory_quarantine DISABLE ROW LEVEL SECURITY",
        "DROP TABLE memory_quarantine",
        "INSERT INTO memory_quarantine (tenant_id, actor) VALUES ('acme', 'the app')",
        f"ALTER SCHEMA public OWNER TO {APP_ROLE}",
    ],
)
def test_the_app_role_cannot_drop_the_tables_or_lift_row_security(
    app: psycopg.Connection[Any], statement: str
) -> None:
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        app.execute(statement)
    assert app.execute("SELECT count(*) FROM execution_audit_log").fetchone() == (1,)


def test_the_app_role_cannot_lift_a_quarantine_but_still_uses_its_rows(
    app: psycopg.Connection[Any], pg_cluster: PgCluster, dbname: str
) -> None:
    app.execute(
        "INSERT INTO memory_items (tenant_id, source_kind, content) VALUES ('a', 'chat', 'x')"
    )
    app.execute(
        "INSERT INTO memory_items (tenant_id, source_kind, content) VALUES ('b', 'chat', 'y')"
    )
    with pg_cluster.admin(dbname) as admin:
        admin.execute("INSERT INTO memory_quarantine (tenant_id, actor) VALUES ('a', 'memops')")
    assert app.execute("DELETE FROM memory_quarantine").rowcount == 0  # row security: none
    assert app.execute("SELECT tenant_id FROM memory_quarantine").fetchall() == [("a",)]
    assert app.execute("SELECT tenant_id FROM memory_items").fetchall() == [("b",)]
    assert app.execute("UPDATE memory_items SET content = 'z'").rowcount == 1
    assert app.execute("DELETE FROM memory_items").rowcount == 1
    with pytest.raises(psycopg.errors.InsufficientPrivilege):  # no CREATE on public (0008)
        app.execute("CREATE TABLE app_scratch (x int)")
    app.execute("CREATE TEMP TABLE app_scratch (x int)")  # TEMPORARY on the database
    app.execute("DROP TABLE app_scratch")


def test_the_app_role_keeps_insert_and_select_only(
    app: psycopg.Connection[Any], pg_cluster: PgCluster, dbname: str
) -> None:
    with pg_cluster.admin() as admin:
        assert not audit_owner.is_member(admin, APP_ROLE)  # the lent membership is back
    app.execute(f"GRANT ALL ON execution_audit_log TO {APP_ROLE}")  # a warning: nothing to grant
    privileges = ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER")
    held = {
        p
        for p in privileges
        if app.execute(
            "SELECT has_table_privilege(current_user, 'execution_audit_log', %s)", (p,)
        ).fetchone()
        == (True,)
    }
    assert held == {"SELECT", "INSERT"}
    inserted = app.execute(
        "INSERT INTO execution_audit_log (actor, action) VALUES ('app', 'memory.rejudge')"
        " RETURNING id"
    ).fetchone()
    assert inserted is not None and inserted[0] > 1
    owners = app.execute(
        "SELECT pg_get_userbyid(relowner) FROM pg_class WHERE relname = ANY(%s) ORDER BY relname",
        (["execution_audit_log", "execution_audit_log_id_seq"],),
    ).fetchall()
    function_owner = app.execute(
        "SELECT pg_get_userbyid(proowner) FROM pg_proc WHERE proname = %s",
        ("execution_audit_log_append_only",),
    ).fetchone()
    assert [*owners, function_owner] == [(audit_owner.AUDIT_OWNER,)] * 3
    assert audit_owner.audit_log_owner(app) == audit_owner.AUDIT_OWNER
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        app.execute("DELETE FROM execution_audit_log")


def test_audit_owner_migration_needs_the_lent_membership(
    app: psycopg.Connection[Any], pg_cluster: PgCluster
) -> None:
    with pytest.raises(
        MigrationError,
        match=f"reverting 0008_database_owner failed: role {APP_ROLE} is not a member of "
        f"{audit_owner.AUDIT_OWNER}",
    ):
        migrate(app, 3)  # 0008, the first step down, needs the membership already
    assert current_version(app) == 8
    assert audit_owner.audit_log_owner(app) == audit_owner.AUDIT_OWNER
    pg_cluster.migrate(app, 3)  # lent: the down hands the log back to the database owner
    assert audit_owner.audit_log_owner(app) == APP_ROLE
    with pytest.raises(MigrationError, match="applying 0004_audit_owner failed: role"):
        migrate(app)
    assert current_version(app) == 3
    assert pg_cluster.migrate(app).applied == [4, 5, 6, 7, 8]
    assert audit_owner.audit_log_owner(app) == audit_owner.AUDIT_OWNER


# ------------------------------------------------------------ database owner


def _database(pg_cluster: PgCluster, dbname: str) -> tuple[str, dict[str, bool], bool]:
    """Owner of ``dbname``, the app role's privileges on it, whether PUBLIC has any."""
    with pg_cluster.admin() as admin:
        owner, connect, temporary, create, public = admin.execute(
            "SELECT pg_get_userbyid(datdba),"
            " has_database_privilege(%(app)s, datname, 'CONNECT'),"
            " has_database_privilege(%(app)s, datname, 'TEMPORARY'),"
            " has_database_privilege(%(app)s, datname, 'CREATE'),"
            " EXISTS (SELECT FROM aclexplode(datacl) WHERE grantee = 0)"
            " FROM pg_database WHERE datname = %(db)s",
            {"app": APP_ROLE, "db": dbname},
        ).fetchone()  # type: ignore[misc]
    return owner, {"CONNECT": connect, "TEMPORARY": temporary, "CREATE": create}, public


def _uses_its_memory(pg_cluster: PgCluster, dbname: str) -> None:
    """A new app-role session reads and writes memory_items and writes the audit log."""
    with pg_cluster.connect(dbname, autocommit=True) as app:
        app.execute(
            "INSERT INTO memory_items (tenant_id, source_kind, content) VALUES ('t', 'chat', 'x')"
        )
        assert app.execute("UPDATE memory_items SET content = 'y'").rowcount >= 1
        assert app.execute("SELECT content FROM memory_items").fetchall()[-1] == ("y",)
        _insert_audit(app)
        assert app.execute("DELETE FROM memory_items").rowcount >= 1


@pytest.mark.parametrize(
    "statement",
    [
        "DROP DATABASE {db}",
        "ALTER DATABASE {db} OWNER TO {app}",
        "ALTER DATABASE {db} RENAME TO {db}_gone",
        "ALTER DATABASE {db} CONNECTION LIMIT 0",
        "ALTER DATABASE {db} SET default_transaction_read_only = on",
    ],
)
def test_the_app_role_cannot_drop_or_take_its_database(
    app: psycopg.Connection[Any], pg_cluster: PgCluster, dbname: str, statement: str
) -> None:
    app.close()  # no session of its own in the way: only the privilege check can refuse
    refused = pytest.raises(psycopg.errors.InsufficientPrivilege, match="must be owner")
    with pg_cluster.connect("postgres", autocommit=True) as elsewhere, refused:
        elsewhere.execute(statement.format(db=dbname, app=APP_ROLE))
    assert _database(pg_cluster, dbname)[0] == audit_owner.AUDIT_OWNER
    _uses_its_memory(pg_cluster, dbname)


def test_the_database_belongs_to_the_owner_role_from_0008(
    app: psycopg.Connection[Any], pg_cluster: PgCluster, dbname: str
) -> None:
    connect_and_temporary = {"CONNECT": True, "TEMPORARY": True, "CREATE": False}
    assert _database(pg_cluster, dbname) == (
        audit_owner.AUDIT_OWNER,
        connect_and_temporary,
        False,
    )
    held = app.execute(
        "SELECT has_schema_privilege('public', 'USAGE'), has_schema_privilege('public', 'CREATE')"
    ).fetchone()
    assert held == (True, False)
    _uses_its_memory(pg_cluster, dbname)

    # Reverting 0008 gives the database back first: the app keeps its rights throughout.
    assert pg_cluster.migrate(app, 7).reverted == [8]
    assert _database(pg_cluster, dbname) == (
        APP_ROLE,
        {**connect_and_temporary, "CREATE": True},
        False,
    )
    _uses_its_memory(pg_cluster, dbname)
    assert pg_cluster.migrate(app).applied == [8]
    assert _database(pg_cluster, dbname) == (
        audit_owner.AUDIT_OWNER,
        connect_and_temporary,
        False,
    )
    _uses_its_memory(pg_cluster, dbname)
    assert pg_cluster.migrate(app).changed is False


def test_0008_grants_the_application_role_by_name(
    pg_cluster: PgCluster, dbname: str, lent: None
) -> None:
    with pg_cluster.connect(dbname, autocommit=True) as app:
        migrate(app, 7)
    with pg_cluster.admin(dbname) as superuser:  # a superuser is not the application role
        with pytest.raises(MigrationError, match="role postgres is not the application role"):
            migrate(superuser)
        superuser.execute(f"SET memops.app_role = {audit_owner.AUDIT_OWNER}")
        with pytest.raises(MigrationError, match="role memops_audit_owner is not the appl"):
            migrate(superuser)
        superuser.execute(f"SET memops.app_role = {APP_ROLE}")  # as audit_owner.secure does
        assert migrate(superuser).applied == [8]
        superuser.execute("RESET memops.app_role")
        grantees = superuser.execute(
            "SELECT DISTINCT pg_get_userbyid(a.grantee) FROM pg_class c, aclexplode(c.relacl) a"
            " WHERE c.relname IN ('memory_items', 'memory_quarantine', 'execution_audit_log')"
            " AND pg_get_userbyid(a.grantee) NOT IN ('memops_audit_owner', 'pg_database_owner')"
        ).fetchall()
        assert grantees == [(APP_ROLE,)]


def test_audit_owner_migration_without_the_role_says_what_to_do(
    conn: psycopg.Connection[Any], pg_cluster: PgCluster, tmp_path: Path
) -> None:
    directory = _copy_migrations(tmp_path)
    for path in directory.glob("0004_*"):  # same text, another role name: a missing role
        path.write_text(path.read_text().replace("memops_audit_owner", "memops_no_such_owner"))
    with pytest.raises(MigrationError, match=r"role memops_no_such_owner does not exist.*deploy"):
        migrate(conn, migrations=discover(directory))
    assert current_version(conn) == 3


def test_memory_items_is_never_truncated(
    conn: psycopg.Connection[Any], pg_cluster: PgCluster, dbname: str
) -> None:
    migrate(conn)
    refused = pytest.raises(psycopg.errors.RestrictViolation, match="is never truncated")
    with pg_cluster.admin(dbname) as admin, refused:  # not even by a superuser
        admin.execute("TRUNCATE memory_items")


def test_content_hash_is_filled_on_insert_and_never_recomputed(
    conn: psycopg.Connection[Any],
) -> None:
    migrate(conn, target=5)
    conn.execute(
        "INSERT INTO memory_items (tenant_id, source_kind, content) VALUES ('a', 'chat', 'old')"
    )
    migrate(conn)  # 0006 backfills the rows it finds
    assert conn.execute("SELECT content_hash FROM memory_items").fetchone() == (
        content_hash("old"),
    )
    row_id, filled = conn.execute(
        "INSERT INTO memory_items (tenant_id, source_kind, content) VALUES ('a', 'chat', 'né')"
        " RETURNING id, content_hash"
    ).fetchone()  # type: ignore[misc]
    assert filled == content_hash("né")  # the writer gave none: the trigger hashes UTF-8
    conn.execute("UPDATE memory_items SET content = 'changed' WHERE id = %s", (row_id,))
    kept = conn.execute("SELECT content_hash FROM memory_items WHERE id = %s", (row_id,)).fetchone()
    assert kept == (content_hash("né"),)  # an UPDATE behind the hash stays detectable
    with pytest.raises(psycopg.errors.CheckViolation):
        conn.execute(
            "UPDATE memory_items SET content_hash = 'not-a-digest' WHERE id = %s", (row_id,)
        )


def test_supersede_chain_stays_within_tenant(conn: psycopg.Connection[Any]) -> None:
    migrate(conn)
    new, old = (
        conn.execute(
            "INSERT INTO memory_items (tenant_id, source_kind, content) VALUES (%s, 'chat', 'x')"
            " RETURNING id",
            (tenant,),
        ).fetchone()[0]  # type: ignore[index]
        for tenant in ("a", "b")
    )
    with pytest.raises(psycopg.errors.ForeignKeyViolation):
        conn.execute("UPDATE memory_items SET superseded_by = %s WHERE id = %s", (new, old))
    conn.execute("UPDATE memory_items SET tenant_id = 'a' WHERE id = %s", (old,))
    conn.execute("UPDATE memory_items SET superseded_by = %s WHERE id = %s", (new, old))
    # The newer row cannot vanish from under the chain …
    with pytest.raises(psycopg.errors.ForeignKeyViolation):
        conn.execute("DELETE FROM memory_items WHERE id = %s", (new,))
    # … but the whole chain can be purged in one statement.
    conn.execute("DELETE FROM memory_items WHERE tenant_id = 'a'")


# ------------------------------------------------------------------ concurrency


def test_concurrent_runners_apply_once(pg_cluster: PgCluster, dbname: str, lent: None) -> None:
    barrier = threading.Barrier(2)
    reports: list[runner.MigrationReport] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            with pg_cluster.connect(dbname, autocommit=True) as connection:
                barrier.wait()
                reports.append(migrate(connection))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors
    assert sorted(r.applied for r in reports) == [[], ALL]
    assert sorted(r.changed for r in reports) == [False, True]
    with pg_cluster.connect(dbname) as connection:
        rows = connection.execute("SELECT version FROM schema_migrations ORDER BY 1").fetchall()
    assert rows == [(v,) for v in ALL]


def test_runner_waits_for_the_lock(pg_cluster: PgCluster, dbname: str, lent: None) -> None:
    with pg_cluster.connect(dbname, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (runner.LOCK_KEY,))
        with pg_cluster.connect(dbname, autocommit=True) as impatient:
            with pytest.raises(MigrationError, match="held the lock"):
                migrate(impatient, lock_timeout_s=0.3)
            assert current_version(impatient) == 0

        reports: list[runner.MigrationReport] = []

        def run() -> None:
            with pg_cluster.connect(dbname, autocommit=True) as connection:
                reports.append(migrate(connection))

        waiter = threading.Thread(target=run)
        waiter.start()
        time.sleep(0.5)
        assert waiter.is_alive() and current_version(holder) == 0
        holder.execute("SELECT pg_advisory_unlock(%s)", (runner.LOCK_KEY,))
        waiter.join(30)
    assert reports[0].applied == ALL


# ------------------------------------------------------------------------ CLI


def _cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m memops")
    cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["migrate", *argv])
    return int(args.handler(args))


@pytest.fixture
def pg_env(
    pg_cluster: PgCluster, dbname: str, lent: None, monkeypatch: pytest.MonkeyPatch
) -> dict[str, Any]:
    params = pg_cluster.app_params(dbname)
    for key, value in params.items():
        monkeypatch.setenv(f"MEMOPS_PG_{key.upper()}", str(value))
    return params


def test_cli_prints_one_json_line(
    pg_env: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    assert _cli(["--dry-run"]) == 0
    assert json.loads(capsys.readouterr().out)["dry_run"] is True
    assert _cli([]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    assert json.loads(out) == {
        "changed": True,
        "from": 0,
        "to": LATEST,
        "applied": ALL,
        "reverted": [],
    }
    assert _cli(["--to", "latest"]) == 0
    assert json.loads(capsys.readouterr().out)["changed"] is False
    assert _cli(["--to", "1"]) == 0
    assert json.loads(capsys.readouterr().out)["reverted"] == ALL[:0:-1]


def test_cli_errors_are_one_line_without_secrets(
    pg_env: dict[str, Any], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MEMOPS_PG_PASSWORD", "wrong-Secret-123")
    assert _cli([]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("memops migrate: error: PostgreSQL:")
    assert captured.err.count("\n") == 1
    assert "wrong-Secret-123" not in captured.err

    monkeypatch.setenv("MEMOPS_PG_PASSWORD", pg_env["password"])
    assert _cli(["--to", "9"]) == 1
    assert "target version 9 is unknown" in capsys.readouterr().err


def test_conninfo_from_env_validates() -> None:
    env = {"MEMOPS_PG_HOST": "db", "MEMOPS_PG_DBNAME": "memory", "MEMOPS_PG_USER": "memops"}
    target = cli.target_from_env(env)
    assert (target.host, target.port, target.sslmode) == ("db", 5432, "prefer")
    assert target.password is None
    with pytest.raises(cli.ConfigError, match="MEMOPS_PG_USER is not set"):
        cli.target_from_env({**env, "MEMOPS_PG_USER": ""})
    with pytest.raises(cli.ConfigError, match="PORT"):
        cli.target_from_env({**env, "MEMOPS_PG_PORT": "99999"})
    with pytest.raises(cli.ConfigError, match="SSLMODE"):
        cli.target_from_env({**env, "MEMOPS_PG_SSLMODE": "maybe"})
    with pytest.raises(SystemExit):
        _cli(["--to", "-1"])
