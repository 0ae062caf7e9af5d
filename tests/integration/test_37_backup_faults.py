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
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from integration_helpers import (
    INVOKE,
    REDIS_PIDFILE,
    TEST_INVENTORY,
    DeployedStack,
    invoke,
    pidfile_daemon,
)

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
def redis_restarted_after(deployed_stack: DeployedStack) -> Iterator[None]:
    yield
    redeployed = invoke("deploy", "--inventory", TEST_INVENTORY, "--tags", "redis", "--json")
    assert redeployed.returncode == 0, redeployed.stderr


def test_redis_killed_during_a_backup_fails_it_and_leaves_no_set(
    deployed_stack: DeployedStack, redis_restarted_after: None
) -> None:
    earlier = _backup("create", "--tier", "redis")
    assert earlier.returncode == 0, earlier.stderr
    before = _set_ids()

    # Paused clients make the backup's BGSAVE wait; the server is killed meanwhile.
    deployed_stack.clients.redis().execute_command("CLIENT", "PAUSE", "20000", "ALL")
    killer = threading.Timer(2.0, pidfile_daemon, ("stop", REDIS_PIDFILE))
    killer.start()
    try:
        run = _backup("create", "--tier", "redis")
    finally:
        killer.join()

    assert run.returncode == 1, run.stdout
    assert run.stderr.strip().startswith("memops backup.create: redis"), run.stderr
    assert len(run.stderr.strip().splitlines()) == 1, run.stderr
    assert _set_ids() == before
    verified = _backup("verify", earlier.json()["set_id"])
    assert verified.returncode == 0, verified.stdout


@pytest.fixture
def postgresql_restarted_after(deployed_stack: DeployedStack) -> Iterator[None]:
    yield
    redeployed = invoke("deploy", "--inventory", TEST_INVENTORY, "--tags", "postgresql", "--json")
    assert redeployed.returncode == 0, redeployed.stderr


def test_postgresql_killed_during_a_backup_fails_it_and_leaves_no_set(
    deployed_stack: DeployedStack, postgresql_restarted_after: None
) -> None:
    earlier = _backup("create", "--tier", "postgresql")
    assert earlier.returncode == 0, earlier.stderr
    before = _set_ids()
    cluster = deployed_stack.targets.deployment["postgresql"]["cluster"]

    # The backup waits for a lock this session holds; the server is killed meanwhile.
    blocker = deployed_stack.clients.postgresql()
    blocker.execute("BEGIN")
    blocker.execute("LOCK TABLE memory_items IN ACCESS EXCLUSIVE MODE")
    stop = ["pg_ctlcluster", "15", cluster, "stop", "-m", "immediate"]
    killer = threading.Timer(2.0, subprocess.run, (stop,), {"check": True})
    killer.start()
    try:
        run = _backup("create", "--tier", "postgresql")
    finally:
        killer.join()
        blocker.close()

    assert run.returncode == 1, run.stdout
    assert run.stderr.strip().startswith("memops backup.create: postgresql"), run.stderr
    assert len(run.stderr.strip().splitlines()) == 1, run.stderr
    assert _set_ids() == before
    subprocess.run(["pg_ctlcluster", "15", cluster, "start"], check=True)
    verified = _backup("verify", earlier.json()["set_id"])
    assert verified.returncode == 0, verified.stdout


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
