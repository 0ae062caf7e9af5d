"""roles/postgresql/tasks/database.yml against a scratch cluster: the audit owner role.

ansible-playbook runs the role's database tasks (app role, audit owner role,
database, migration) on localhost against a throwaway cluster, as the deploy
does against the managed host: the modules log in as postgres over the socket,
the migration runs as the application role over TCP. What this proves: the
first run creates memops_audit_owner and migrates with it lent, a second run
and a check-mode run change nothing, the membership is taken back after every
run (a failed migration included), and a lower postgresql_schema_version
reverts 0004 through the same lending.
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

from memops import audit_owner
from memops.migrate import current_version, latest_version
from memops.paths import PROJECT_DIR
from memops.pgcluster import ClusterUnavailable, ScratchCluster, scratch_cluster

pytestmark = pytest.mark.integration

APP_ROLE = "roletest"
DB = "memops_roletest"
SYSTEM_PYTHON = "/usr/bin/python3"  # the managed host's Python, with python3-psycopg2
PLAYBOOK = """\
- name: The postgresql role's database tasks
  hosts: localhost
  gather_facts: false
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
    play.write_text(PLAYBOOK.format(tasks=PROJECT_DIR / "roles/postgresql/tasks/database.yml"))
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


def test_the_role_migrates_with_the_owner_lent_and_takes_it_back(
    cluster: ScratchCluster, tmp_path: Path
) -> None:
    first = run_tasks(cluster, tmp_path)
    assert first["failed"] == 0 and first["changed"] > 0
    assert app_state(cluster) == (latest_version(), audit_owner.AUDIT_OWNER, False)
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

    failed = run_tasks(cluster, tmp_path, postgresql_schema_version="99")  # an unknown version
    assert failed["failed"] == 1
    assert app_state(cluster) == (latest_version(), audit_owner.AUDIT_OWNER, False)

    down = run_tasks(cluster, tmp_path, postgresql_schema_version="3")
    assert down["failed"] == 0 and down["changed"] == 1
    assert app_state(cluster) == (3, APP_ROLE, False)  # 0004 down: back to the database owner
    up = run_tasks(cluster, tmp_path)
    assert up["failed"] == 0
    assert app_state(cluster) == (latest_version(), audit_owner.AUDIT_OWNER, False)
