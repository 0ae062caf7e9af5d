"""Faults during backups and restores of the deployed test stack: nothing half-done is left live.

- A Redis or PostgreSQL server killed in the middle of a backup fails it in one line,
  leaves no set, and earlier sets still verify.
- A whole PostgreSQL restore killed while it loads leaves the live database as it was;
  the next action says the killed one did not finish, and the next verified whole set
  drops the half-loaded database.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import psycopg
import pytest
from integration_helpers import (
    INVOKE,
    REDIS_PIDFILE,
    TEST_INVENTORY,
    DeployedStack,
    invoke,
    pidfile_daemon,
)
from psycopg import sql

from memops.backup.postgresql.tier import PostgresTier
from memops.clients import postgres_connect
from memops.deploy.targets import PostgresTarget
from memops.paths import PROJECT_DIR

pytestmark = pytest.mark.integration

BULK_TENANT = "fault-bulk"


def _backup(*args: str) -> Any:
    return invoke("backup." + args[0], *args[1:], "--inventory", TEST_INVENTORY, "--json")


def _set_ids() -> list[str]:
    listed = _backup("list")
    assert listed.returncode == 0, listed.stderr
    return [entry["set_id"] for entry in listed.json()["sets"]]


def _databases(stack: DeployedStack) -> list[str]:
    with stack.clients.postgresql() as conn:
        return [name for (name,) in conn.execute("SELECT datname FROM pg_database").fetchall()]


@pytest.fixture
def redeploy_after() -> Iterator[list[str]]:
    """A test adds the tags of the services it kills: they are deployed (started) again."""
    tags: list[str] = []
    yield tags
    for tag in tags:
        redeployed = invoke("deploy", "--inventory", TEST_INVENTORY, "--tags", tag, "--json")
        assert redeployed.returncode == 0, redeployed.stderr


def assert_a_killed_server_fails_the_backup(
    tier: str, hold: Callable[[], object], kill: Callable[[], object]
) -> None:
    """Take a set of ``tier``; then ``hold`` makes the next backup wait, and ``kill`` stops the
    server 2 s into it: one line, exit 1, no new set, and the earlier set still verifies."""
    earlier = _backup("create", "--tier", tier)
    assert earlier.returncode == 0, earlier.stderr
    before = _set_ids()
    hold()
    killer = threading.Timer(2.0, kill)
    killer.start()
    try:
        run = _backup("create", "--tier", tier)
    finally:
        killer.join()

    assert run.returncode == 1, run.stdout
    assert run.stderr.strip().startswith(f"memops backup.create: {tier}"), run.stderr
    assert len(run.stderr.strip().splitlines()) == 1, run.stderr
    assert _set_ids() == before
    verified = _backup("verify", earlier.json()["set_id"])
    assert verified.returncode == 0, verified.stdout


def test_redis_killed_during_a_backup_fails_it_and_leaves_no_set(
    deployed_stack: DeployedStack, redeploy_after: list[str]
) -> None:
    redeploy_after.append("redis")
    assert_a_killed_server_fails_the_backup(
        "redis",
        # paused clients make the backup's BGSAVE wait
        hold=lambda: deployed_stack.clients.redis().execute_command("CLIENT", "PAUSE", "20000"),
        kill=lambda: pidfile_daemon("stop", REDIS_PIDFILE),
    )


def test_postgresql_killed_during_a_backup_fails_it_and_leaves_no_set(
    deployed_stack: DeployedStack, redeploy_after: list[str]
) -> None:
    redeploy_after.append("postgresql")
    cluster = deployed_stack.targets.deployment["postgresql"]["cluster"]
    blocker = deployed_stack.clients.postgresql()

    def hold() -> None:  # the backup waits for the lock this session holds
        blocker.execute("BEGIN")
        blocker.execute("LOCK TABLE memory_items IN ACCESS EXCLUSIVE MODE")

    stop = ["pg_ctlcluster", "15", cluster, "stop", "-m", "immediate"]
    try:
        assert_a_killed_server_fails_the_backup(
            "postgresql", hold=hold, kill=lambda: subprocess.run(stop, check=True)
        )
    finally:
        blocker.close()


def test_a_killed_whole_postgresql_restore_leaves_the_live_database(
    deployed_stack: DeployedStack,
) -> None:
    clients = deployed_stack.clients
    with clients.postgresql() as conn:
        conn.execute("DELETE FROM memory_items WHERE tenant_id = %s", [BULK_TENANT])
        # enough rows that loading the dump takes a while
        conn.execute(
            "INSERT INTO memory_items (tenant_id, source_kind, content) "
            "SELECT %s, 'chat', repeat(md5(i::text), 8) FROM generate_series(1, 150000) i",
            [BULK_TENANT],
        )
    made = _backup("create", "--tier", "postgresql")
    assert made.returncode == 0, made.stderr
    with clients.postgresql() as conn:
        conn.execute("DELETE FROM memory_items WHERE tenant_id = %s", [BULK_TENANT])
        live = conn.execute(
            "SELECT count(*), md5(string_agg(id::text, ',' ORDER BY id)) FROM memory_items"
        ).fetchone()
    dbname = deployed_stack.targets.components["postgresql"].dbname  # type: ignore[attr-defined]

    set_id = made.json()["set_id"]
    argv = [INVOKE, "backup.restore", set_id, "--inventory", TEST_INVENTORY]
    restore = subprocess.Popen(
        [*argv, "--tier", "postgresql", "--yes"],
        cwd=PROJECT_DIR,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while not any(name.startswith(f"{dbname}_restore_") for name in _databases(deployed_stack)):
        assert restore.poll() is None, "the restore ended before it was killed"
        assert time.monotonic() < deadline, "the restore never began to load"
        time.sleep(0.02)
    os.killpg(restore.pid, signal.SIGKILL)
    restore.wait(timeout=30)

    with clients.postgresql() as conn:
        after = conn.execute(
            "SELECT count(*), md5(string_agg(id::text, ',' ORDER BY id)) FROM memory_items"
        ).fetchone()
    assert after == live  # the live database is the one from before, untouched
    leftovers = [n for n in _databases(deployed_stack) if n.startswith(f"{dbname}_restore_")]
    assert leftovers

    again = _backup("create", "--tier", "postgresql")
    assert again.returncode == 0, again.stderr
    assert "backup.restore" in again.stderr and "did not finish" in again.stderr, again.stderr
    assert set(leftovers) <= set(again.json()["housekeeping"]["postgresql"]["dropped"])
    assert not [n for n in _databases(deployed_stack) if n.startswith(f"{dbname}_restore_")]
    assert not [n for n in _databases(deployed_stack) if n.startswith(f"{dbname}_pre_")]


def test_the_lock_file_names_no_unfinished_action_after_clean_runs(
    deployed_stack: DeployedStack,
) -> None:
    first = _backup("create", "--tier", "redis")
    second = _backup("create", "--tier", "redis")
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    assert "did not finish" not in second.stderr
    lock = Path(deployed_stack.state_dir) / "action.lock"
    assert lock.read_text().endswith(" finished")


def test_deploy_lets_a_database_left_refusing_connections_accept_them(
    deployed_stack: DeployedStack,
) -> None:
    """The end state of a restore killed in its swap: the live database refuses every
    session. `invoke deploy --tags postgresql` turns connections back on and says so."""
    target = deployed_stack.targets.components["postgresql"]
    assert isinstance(target, PostgresTarget)
    deployment = dict(deployed_stack.targets.deployment.get("postgresql") or {})
    admin = replace(PostgresTier.from_deployment(target, deployment).admin, dbname="postgres")
    allow = sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS {}")
    with postgres_connect(admin) as superuser:
        superuser.execute(allow.format(sql.Identifier(target.dbname), sql.SQL("false")))
        try:
            with pytest.raises(psycopg.OperationalError, match="not currently accepting"):
                postgres_connect(target).close()
            run = invoke("deploy", "--inventory", TEST_INVENTORY, "--tags", "postgresql", "--json")
            assert run.returncode == 0, run.stderr
            tasks = [entry["task"] for entry in run.json()["changed_tasks"]]
            assert any("Allow connections again" in task for task in tasks), tasks
            with postgres_connect(target) as conn:
                assert conn.execute("SELECT 1").fetchone() == (1,)
        finally:
            superuser.execute(allow.format(sql.Identifier(target.dbname), sql.SQL("true")))
