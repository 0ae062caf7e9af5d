"""A replicated PostgreSQL tier on the lab: three members under Patroni on a three-member etcd.

The proofs of issue #25's PostgreSQL half, on the shared replicated lab (``ha_stack``):
Patroni reports a leader, a synchronous standby and a replica, and health names each one's
part; a second deploy changes nothing; a whole restore, done on the leader, is what every
member serves; `invoke switchover --tier postgresql` moves the leader; a leader cut off
the network stops taking writes while another is elected, and follows it once back; a
killed leader's host is replaced by the synchronous standby with no committed row lost,
and the old leader rejoins on the new timeline after `docker start`.
Every fact comes from Patroni and from rows, not from memops' own view.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import psycopg
import pytest
from lab_helpers import HA_LAB_HOME, LabStack, lab_invoke
from runbook_steps import check_output, parse, run_invoke

from memops.backup.engines import tier_target
from memops.clients import postgres_connect
from memops.deploy.targets import PostgresTarget, load_targets
from memops.ha.patroni import (
    LEADER,
    SYNC_STANDBY,
    PatroniMember,
    cluster_members,
    follows,
    leader_of,
    patroni_targets,
)
from memops.lab.engine import find_engine
from memops.lab.lifecycle import lab_cache
from memops.paths import PROJECT_DIR
from memops.testing import workload as wl
from memops.testing.failover import POSTGRES_TABLE, CommittedWriter, postgres_conninfo

pytestmark = pytest.mark.multihost

T = TypeVar("T")
TABLE = POSTGRES_TABLE


def ha_invoke(*args: str, timeout: float = 600) -> Any:
    return lab_invoke(*args, timeout=timeout, home=HA_LAB_HOME)


def _wait_until(check: Callable[[], T], timeout_s: float, what: str) -> T:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            value = check()
        except Exception:  # a member restarting, a REST API not up yet: ask again
            value = None
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


def _members_targets(stack: LabStack) -> list[PostgresTarget]:
    return patroni_targets(load_targets(stack.lab.state_dir))


def _members(stack: LabStack) -> list[PatroniMember]:
    return cluster_members([t.patroni_url or "" for t in _members_targets(stack)], timeout_s=1)


def _admin_conninfo(stack: LabStack, dbname: str = "postgres") -> str:
    """memops' administration login (admitted from the machine), to every member at once."""
    return postgres_conninfo(load_targets(stack.lab.state_dir), dbname)


def _on_member(stack: LabStack, host: str, sql: str) -> list[tuple[Any, ...]]:
    """Run ``sql`` on one member (any role) and return its rows."""
    targets = load_targets(stack.lab.state_dir)
    member = next(t for t in patroni_targets(targets) if t.name == f"postgresql@{host}")
    login = targets.deployment[member.name]["admin_login"]
    with psycopg.connect(
        host=member.host,
        port=member.port,
        dbname="postgres",
        user=login["user"],
        password=login["password"],
        connect_timeout=3,
    ) as conn:
        return conn.execute(sql).fetchall()


def _container(stack: LabStack, host: str) -> Any:
    engine = find_engine(lab_cache())
    assert engine is not None
    return engine.client.containers.get(host)


def _healthy_cluster(stack: LabStack) -> list[PatroniMember] | None:
    members = _members(stack)
    roles = sorted(m.role for m in members)
    ok = len(members) == 3 and all(m.running for m in members)
    return members if ok and roles == [LEADER, "replica", SYNC_STANDBY] else None


def _wait_healthy(stack: LabStack, what: str) -> list[PatroniMember]:
    members = _wait_until(lambda: _healthy_cluster(stack), 120, what)
    assert members is not None
    return members


def test_patroni_runs_a_leader_a_sync_standby_and_a_replica(ha_stack: LabStack) -> None:
    members = _wait_healthy(ha_stack, "three running members")
    leader = leader_of(members)
    assert leader is not None
    code, document = _health(ha_stack)
    assert code == 0, document
    for member in members:
        details = document["components"][f"postgresql@{member.name}"]["details"]
        assert details["patroni"]["role"] == member.role
        assert details["patroni"]["timeline"] == member.timeline
        assert details["patroni"]["leader"] == leader.name
    # The replication logins are admitted from the members only (pg_hba), never the machine.
    rules = _on_member(
        ha_stack,
        leader.name,
        "SELECT address FROM pg_hba_file_rules WHERE 'replication' = ANY(database)",
    )
    addresses = {t.host for t in _members_targets(ha_stack)}
    assert {row[0] for row in rules} == addresses


def test_a_second_deploy_changes_nothing(ha_stack: LabStack) -> None:
    again = ha_invoke("deploy", "--inventory", ha_stack.lab.inventory, "--json", timeout=1800)
    assert again.returncode == 0, again.stderr
    document = again.json()
    assert document["changed"] == 0, document.get("changed_tasks")


def _tenant_digest(target: PostgresTarget, tenants: list[str]) -> tuple[Any, ...]:
    """What a member holds of ``tenants``: rows and a hash of every column of each."""
    with postgres_connect(target) as conn:
        row = conn.execute(
            "SELECT count(*), sum(hash_record_extended(m.*, 0)) FROM memory_items m "
            "WHERE tenant_id = ANY(%s)",
            [tenants],
        ).fetchone()
    assert row is not None
    return tuple(row)


def test_a_whole_restore_on_the_leader_is_followed_by_every_member(ha_stack: LabStack) -> None:
    inventory = ha_stack.lab.inventory
    data = wl.generate(seed=2525, tenants=2, items_per_tenant=10, nasty=False)
    tenants = list(data.tenants)
    targets = load_targets(ha_stack.lab.state_dir)
    leader = tier_target(targets, "postgresql")
    with postgres_connect(leader) as conn:
        conn.execute("DELETE FROM memory_items WHERE tenant_id = ANY(%s)", [tenants])
        wl.write_postgres(conn, data)
    wanted = _tenant_digest(leader, tenants)
    assert wanted[0] == 20
    made = ha_invoke("backup.create", "--tier", "postgresql", "--inventory", inventory)
    assert made.returncode == 0, made.stderr
    set_id = made.stdout.split()[2]
    with postgres_connect(leader) as conn:  # the damage the restore undoes
        conn.execute("DELETE FROM memory_items WHERE tenant_id = %s", [tenants[0]])
    restored = ha_invoke(
        "backup.restore",
        set_id,
        "--tier",
        "postgresql",
        "--yes",
        "--drop-old",
        "--inventory",
        inventory,
    )
    assert restored.returncode == 0, restored.stderr
    for member in _members_targets(ha_stack):  # each serves the restored database
        _wait_until(lambda m=member: _tenant_digest(m, tenants) == wanted, 60, member.name)
    _wait_healthy(ha_stack, "every member streaming after the restore")


def test_switchover_moves_the_leader_to_the_sync_standby(ha_stack: LabStack) -> None:
    members = _wait_healthy(ha_stack, "a healthy cluster")
    old = leader_of(members)
    sync = next(m for m in members if m.role == SYNC_STANDBY)
    assert old is not None
    run = ha_invoke(
        "switchover", "--inventory", ha_stack.lab.inventory, "--tier", "postgresql",
        "--to", sync.name, "--yes", "--json",
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert run.json()["new"] == sync.name
    after = _wait_healthy(ha_stack, "the old leader following")
    now = leader_of(after)
    assert now is not None and now.name == sync.name
    assert now.timeline is not None and old.timeline is not None and now.timeline > old.timeline


def test_a_leader_cut_off_the_network_stops_taking_writes_and_rejoins(
    ha_stack: LabStack,
) -> None:
    members = _wait_healthy(ha_stack, "a healthy cluster")
    old = leader_of(members)
    assert old is not None
    network = find_engine(lab_cache()).client.networks.get(ha_stack.lab.name)  # type: ignore[union-attr]
    container = _container(ha_stack, old.name)
    address = ha_stack.lab.hosts[old.name]["address"]
    network.disconnect(container)
    try:
        # No split brain: cut off from etcd, the old leader demotes itself to read-only.
        def demoted() -> bool:
            out = container.exec_run(
                ["psql", "-h", "/var/run/postgresql", "-p", str(old.port), "-U", "postgres",
                 "-d", "postgres", "-Atc", "SELECT pg_is_in_recovery()"],
            )  # fmt: skip
            said = out.output.decode()
            # In recovery, or restarting as a standby (not accepting connections): read-only.
            return (out.exit_code == 0 and said.strip() == "t") or (
                "starting up" in said or "shutting down" in said
            )

        _wait_until(demoted, 90, f"{old.name} refusing writes")
        others = [t.patroni_url or "" for t in _members_targets(ha_stack) if t.host != address]

        def elected() -> PatroniMember | None:
            lead = leader_of(cluster_members(others))
            return lead if lead is not None and lead.name != old.name else None

        new = _wait_until(elected, 90, "a new leader among the others")
        assert new is not None

        def writable() -> bool:  # the new leader takes writes once it has promoted itself
            with psycopg.connect(_admin_conninfo(ha_stack), autocommit=True) as conn:
                return conn.info.host != address

        _wait_until(writable, 60, "a read-write connection to the new leader")
    finally:
        network.connect(container, ipv4_address=address)

    def old_follows_new() -> bool:
        return follows(_members(ha_stack), old.name, new.name)

    _wait_until(old_follows_new, 420, f"{old.name} following {new.name}")
    _wait_healthy(ha_stack, "a healthy cluster again")


def test_a_killed_leader_host_is_replaced_by_the_sync_standby_losing_no_commit(
    ha_stack: LabStack,
) -> None:
    members = _wait_healthy(ha_stack, "a healthy cluster")
    old = leader_of(members)
    sync = next(m for m in members if m.role == SYNC_STANDBY)
    assert old is not None
    container = _container(ha_stack, old.name)
    old_address = ha_stack.lab.hosts[old.name]["address"]
    writer = CommittedWriter(_admin_conninfo(ha_stack))
    writer.prepare()
    writer.start()
    try:
        _wait_until(lambda: len(writer.acknowledged) >= 50, 30, "writes before the kill")
        killed_at = time.monotonic()
        container.kill()
        back_s = _wait_until(
            lambda: writer.first_ack_after(killed_at, not_on=old_address),
            120,
            "acknowledged writes on the new leader",
        )
    finally:
        writer.stop()
    others = [
        t.patroni_url or ""
        for t in _members_targets(ha_stack)
        if t.name != f"postgresql@{old.name}"
    ]
    new = leader_of(cluster_members(others))
    assert new is not None and new.name == sync.name, "Patroni promotes the synchronous standby"
    lost = writer.lost()
    seconds = round(back_s, 1)
    print(
        f"failover: writes back {seconds} s after the kill; "
        f"{len(writer.acknowledged)} acknowledged, {len(lost)} lost"
    )
    assert not lost, f"{len(lost)} committed rows lost of {len(writer.acknowledged)}"

    container.start()  # systemd starts etcd and Patroni; Patroni rewinds and follows

    def rejoined() -> bool:
        return follows(_members(ha_stack), old.name, new.name)

    _wait_until(rejoined, 240, f"{old.name} back as a standby of {new.name}")
    rows = _on_member(ha_stack, old.name, f"SELECT count(*) FROM {TABLE}")
    assert rows[0][0] >= len(writer.acknowledged)
    _wait_until(lambda: _health(ha_stack)[0] == 0, 180, "a healthy stack again")


def _health(stack: LabStack) -> tuple[int, dict[str, Any]]:
    run = ha_invoke("health", "--inventory", stack.lab.inventory, "--json", timeout=300)
    return run.returncode, run.json()


RUNBOOK = PROJECT_DIR / "docs" / "runbooks" / "postgresql-failover.md"


def test_the_failover_runbook_runs_as_typed(ha_stack: LabStack) -> None:
    """docs/runbooks/postgresql-failover.md, every step as typed; section 3 after a real kill
    of the leader's host, its second step once the host is back and follows the new leader."""
    lab = ha_stack.lab
    sections = parse(RUNBOOK.read_text(), heading="## ")
    assert [s.title for s in sections] == [
        "1. Who leads",
        "2. Planned switchover",
        "3. After an unplanned failover",
    ]
    values: dict[str, str] = {}

    def run(step: Any) -> None:
        lines = run_invoke(step, values, Path(lab.inventory), lab.state_dir)
        check_output(step, lines, values, ())

    _wait_healthy(ha_stack, "a healthy cluster")
    for step in sections[0].steps + sections[1].steps:
        run(step)
    old = leader_of(_wait_healthy(ha_stack, "a healthy cluster after the switchover"))
    assert old is not None
    container = _container(ha_stack, old.name)
    container.kill()
    try:
        others = [t.patroni_url or "" for t in _members_targets(ha_stack) if t.host != old.host]

        def elected() -> PatroniMember | None:
            lead = leader_of(cluster_members(others))
            return lead if lead is not None and lead.name != old.name and lead.running else None

        new = _wait_until(elected, 120, "a new leader")
        first, *rest = sections[2].steps
        run(first)
    finally:
        container.start()
    _wait_until(lambda: follows(_members(ha_stack), old.name, new.name), 240, "rejoined")
    _wait_until(lambda: _health(ha_stack)[0] == 0, 180, "a healthy stack again")
    for step in rest:
        run(step)
