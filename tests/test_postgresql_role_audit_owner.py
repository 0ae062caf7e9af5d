"""roles/postgresql/tasks/database.yml against a scratch cluster: the audit owner role.

ansible-playbook runs the role's database tasks (app role, audit owner role,
database, migration) on localhost against a throwaway cluster, as the deploy
does against the managed host: the modules log in as postgres over the socket,
the migration runs as the application role over TCP. What this proves: the
first run creates memops_audit_owner and migrates with it lent, a second run
and a check-mode run change nothing, the membership is taken back after every
run (a failed migration included), and a lower postgresql_schema_version
reverts 0004 through the same lending. From migration 0008 on the database
belongs to memops_audit_owner: the application role cannot drop it or give it
away, yet connects, migrates, reads and writes; a database the application role
owns (as earlier deploys left it) is handed over, and a whole restore leaves the
owner and grants the role gives.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from memops.backup.postgresql.tier import PostgresTier
from memops.paths import PROJECT_DIR
from memops.schema import owner as audit_owner
from memops.schema.migrate import current_version, latest_version, migrate
from memops.testing.pgcluster import ClusterUnavailable, ScratchCluster, scratch_cluster

pytestmark = pytest.mark.integration

APP_ROLE = "roletest"
DB = "memops_roletest"
SYSTEM_PYTHON = "/usr/bin/python3"  # the managed host's Python, with python3-psycopg2
PLAYBOOK = """\
- name: The postgresql role's database tasks
  hosts: localhost
  gather_facts: false
  vars_files: [{vars}]  # the role's own (the extra vars below take precedence)
  tasks:
    - name: Database tasks
      ansible.builtin.import_tasks: {tasks}
"""


@pytest.fixture(scope="module")
def cluster() -> Iterator[ScratchCluster]:
    playbook = Path(sys.executable).with_name("ansible-playbook")
    if not playbook.exists() or shutil.which(SYSTEM_PYTHON) is None:
        pytest.skip("ansible-playbook or the system Python is missing")
    probe = subprocess.run([SYSTEM_PYTHON, "-c", "import psycopg2"], check=False)
    if probe.returncode != 0:
        pytest.skip("the system Python has no psycopg2 (python3-psycopg2)")
    try:
        with scratch_cluster("memops_memtest", 31506, app_role=APP_ROLE, db_prefix="role") as c:
            with c.admin() as admin:  # as the role finds a cluster: no audit owner yet
                admin.execute(f"DROP ROLE {audit_owner.AUDIT_OWNER}")
            yield c
    except ClusterUnavailable as exc:
        pytest.skip(str(exc))


def run_tasks(
    cluster: ScratchCluster, tmp_path: Path, *flags: str, **overrides: Any
) -> dict[str, int]:
    """Run the tasks; the recap counts of localhost (ok, changed, failed, …)."""
    variables = {
        "ansible_python_interpreter": SYSTEM_PYTHON,
        "ansible_playbook_python": sys.executable,
        "postgresql_app_user": APP_ROLE,
        "postgresql_app_password": cluster.password,
        "postgresql_app_db": DB,
        "postgresql_ops_user": cluster.ops_role,
        "postgresql_ops_password": cluster.password,
        "postgresql_port": cluster.port,
        "postgresql_probe_host": "127.0.0.1",
        "postgresql_monitor_user": "",
        "postgresql_monitor_password": "",
        "postgresql_admin_user": "memops_admin",  # no network administration login here
        "postgresql_admin_networks": [],
        "postgresql_schema_version": "latest",
        "postgresql_migrate_allow_data_loss": False,
        "_postgresql_socket_dir": str(cluster.socket_dir),
        "_postgresql_sslmode": "disable",
        "_postgresql_audit_owner": audit_owner.AUDIT_OWNER,
    } | overrides
    extra = tmp_path / "vars.json"
    extra.touch(mode=0o600)
    extra.write_text(json.dumps(variables))
    play = tmp_path / "play.yml"
    role = PROJECT_DIR / "roles/postgresql"
    play.write_text(PLAYBOOK.format(tasks=role / "tasks/database.yml", vars=role / "vars/main.yml"))
    env = {
        **os.environ,
        "PYTHONPATH": str(PROJECT_DIR),
        "ANSIBLE_CONFIG": str(PROJECT_DIR / "ansible.cfg"),
        "ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.default",
    }
    playbook = str(Path(sys.executable).with_name("ansible-playbook"))
    done = subprocess.run(
        [playbook, "-i", "localhost,", "-c", "local", "-e", f"@{extra}", str(play), *flags],
        cwd=PROJECT_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    recap = [line for line in done.stdout.splitlines() if line.startswith("localhost ")]
    assert recap, done.stdout[-2000:] + done.stderr[-2000:]
    counts = dict(part.split("=") for part in recap[-1].split(":", 1)[1].split())
    return {key: int(value) for key, value in counts.items()}


def app_state(cluster: ScratchCluster) -> tuple[int, str | None, bool]:
    """Schema version, owner of the audit log, whether the app role holds the owner role."""
    with cluster.connect(DB, autocommit=True) as app, cluster.admin() as admin:
        return (
            current_version(app),
            audit_owner.audit_log_owner(app),
            audit_owner.is_member(admin, APP_ROLE),
        )


def database(cluster: ScratchCluster) -> tuple[str, str] | None:
    """Owner of DB and its database-level grants (datacl); None when there is no DB."""
    with cluster.admin() as admin:
        row = admin.execute(
            "SELECT pg_get_userbyid(datdba), datacl::text FROM pg_database WHERE datname = %s",
            (DB,),
        ).fetchone()
    return (row[0], row[1]) if row else None


def drop_database(cluster: ScratchCluster) -> None:
    with cluster.admin() as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(DB)))


def app_cannot_take_the_database(cluster: ScratchCluster) -> None:
    """As the application role, from another database: no DROP DATABASE, no owner change."""
    with cluster.connect("postgres", autocommit=True) as elsewhere:
        for statement in ("DROP DATABASE {}", "ALTER DATABASE {} OWNER TO {}"):
            query = sql.SQL(statement).format(sql.Identifier(DB), sql.Identifier(APP_ROLE))
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="must be owner"):
                elsewhere.execute(query)
    assert database(cluster) is not None


def app_uses_its_memory(cluster: ScratchCluster) -> int:
    """The application role connects, writes and reads memory_items and the audit log; the
    number of memory_items rows it sees."""
    with cluster.connect(DB, autocommit=True) as app:
        app.execute(
            "INSERT INTO memory_items (tenant_id, source_kind, content) VALUES ('t', 'chat', 'x')"
        )
        assert app.execute("UPDATE memory_items SET content = 'y' WHERE tenant_id = 't'").rowcount
        app.execute("INSERT INTO execution_audit_log (actor, action) VALUES ('app', 'a')")
        app.execute("CREATE TEMP TABLE scratch (x int)")  # TEMPORARY on the database
        return int(app.execute("SELECT count(*) FROM memory_items").fetchone()[0])


def test_the_role_migrates_with_the_owner_lent_and_takes_it_back(
    cluster: ScratchCluster, tmp_path: Path
) -> None:
    drop_database(cluster)
    first = run_tasks(cluster, tmp_path)
    assert first["failed"] == 0 and first["changed"] > 0
    assert app_state(cluster) == (latest_version(), audit_owner.AUDIT_OWNER, False)
    owned = database(cluster)
    assert owned is not None and owned[0] == audit_owner.AUDIT_OWNER  # a new one, handed over
    app_cannot_take_the_database(cluster)
    assert app_uses_its_memory(cluster) == 1
    with cluster.connect(DB, autocommit=True) as app:
        app.execute("INSERT INTO execution_audit_log (actor, action) VALUES ('role', 'test')")
        for statement in (
            "ALTER TABLE execution_audit_log DISABLE TRIGGER ALL",
            "DROP TRIGGER execution_audit_log_no_update_delete ON execution_audit_log",
            "DELETE FROM execution_audit_log",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                app.execute(statement)

    again = run_tasks(cluster, tmp_path)
    assert again["failed"] == 0 and again["changed"] == 0  # idempotent
    checked = run_tasks(cluster, tmp_path, "--check")
    assert checked["failed"] == 0 and checked["changed"] == 0
    assert app_state(cluster) == (latest_version(), audit_owner.AUDIT_OWNER, False)
    assert database(cluster) == owned

    failed = run_tasks(cluster, tmp_path, postgresql_schema_version="99")  # an unknown version
    assert failed["failed"] == 1
    assert app_state(cluster) == (latest_version(), audit_owner.AUDIT_OWNER, False)

    down = run_tasks(cluster, tmp_path, postgresql_schema_version="3")
    assert down["failed"] == 0 and down["changed"] == 2  # the database given back, migrated
    assert app_state(cluster) == (3, APP_ROLE, False)  # 0004 down: back to the database owner
    assert database(cluster) == (APP_ROLE, f"{{{APP_ROLE}=CTc/{APP_ROLE}}}")
    up = run_tasks(cluster, tmp_path)
    assert up["failed"] == 0
    assert app_state(cluster) == (latest_version(), audit_owner.AUDIT_OWNER, False)
    assert database(cluster) == owned
    app_cannot_take_the_database(cluster)
    assert app_uses_its_memory(cluster) == 2


def test_a_database_the_app_role_owns_is_handed_over(
    cluster: ScratchCluster, tmp_path: Path
) -> None:
    """As a deploy before 0008 left it: the database created OWNER the application role,
    PUBLIC's CONNECT and TEMPORARY taken, the schema at 0007, rows in it."""
    drop_database(cluster)
    with cluster.admin() as admin:
        audit_owner.ensure_role(admin)
        admin.execute(
            sql.SQL("CREATE DATABASE {} OWNER {}").format(
                sql.Identifier(DB), sql.Identifier(APP_ROLE)
            )
        )
        admin.execute(
            sql.SQL("REVOKE CONNECT, TEMPORARY ON DATABASE {} FROM PUBLIC").format(
                sql.Identifier(DB)
            )
        )
        with audit_owner.lent(admin, APP_ROLE), cluster.connect(DB, autocommit=True) as app:
            migrate(app, 7)
            app.execute(
                "INSERT INTO memory_items (tenant_id, source_kind, content) VALUES ('o', 'c', 'o')"
            )
    before = database(cluster)
    assert before is not None and before[0] == APP_ROLE

    checked = run_tasks(cluster, tmp_path, "--check")  # says what it would do, does nothing
    assert checked["failed"] == 0 and checked["changed"] > 0
    assert database(cluster) == before
    assert app_state(cluster) == (7, audit_owner.AUDIT_OWNER, False)

    converged = run_tasks(cluster, tmp_path)
    assert converged["failed"] == 0 and converged["changed"] > 0
    assert app_state(cluster) == (latest_version(), audit_owner.AUDIT_OWNER, False)
    owned = database(cluster)
    assert owned is not None and owned[0] == audit_owner.AUDIT_OWNER
    app_cannot_take_the_database(cluster)
    assert app_uses_its_memory(cluster) == 2  # its rows are still there
    again = run_tasks(cluster, tmp_path)
    assert again["failed"] == 0 and again["changed"] == 0
    checked = run_tasks(cluster, tmp_path, "--check")
    assert checked["failed"] == 0 and checked["changed"] == 0
    assert database(cluster) == owned


def test_a_whole_restore_leaves_the_owner_and_grants_the_role_gives(
    cluster: ScratchCluster, tmp_path: Path
) -> None:
    drop_database(cluster)
    assert run_tasks(cluster, tmp_path)["failed"] == 0
    assert app_uses_its_memory(cluster) == 1
    made = database(cluster)
    assert made is not None and made[0] == audit_owner.AUDIT_OWNER
    tier = PostgresTier(cluster.ops_target(DB), admin=cluster.admin_target(), owner=APP_ROLE)
    staging = tmp_path / "set"
    staging.mkdir()
    tier.restore(staging, tier.backup(staging), set_id="role", drop_old=True)
    assert database(cluster) == made
    app_cannot_take_the_database(cluster)
    assert app_uses_its_memory(cluster) == 2  # the restored row, and one more
    again = run_tasks(cluster, tmp_path)  # the role finds nothing to change in it
    assert again["failed"] == 0 and again["changed"] == 0
