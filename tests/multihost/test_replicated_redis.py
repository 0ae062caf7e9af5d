"""A replicated Redis tier on the lab: a primary, two replicas and three Sentinels.

The proofs of issue #25's Redis half, with the commands users type: the Sentinels find
each other and agree on the primary; health names every node's part; a quarantine is in
force on every node, so it survives a switchover; a killed primary's host is replaced by
a replica without losing a write a replica acknowledged (WAIT), and it comes back as a
replica. The kill runs last: it is the one that changes the most.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import redis
from integration.integration_helpers import INVOKE
from integration.webhook_receiver import WebhookReceiver
from lab_helpers import HA_LAB_HOME, LabStack, lab_invoke
from redis.sentinel import Sentinel
from runbook_steps import check_output, parse, run_invoke

from memops.deploy.targets import RedisTarget, SentinelTarget, load_targets
from memops.lab.engine import find_engine
from memops.lab.lifecycle import lab_cache
from memops.paths import PROJECT_DIR
from memops.testing.failover import (
    AcknowledgedWriter,
    redis_settled,
    rejoined,
    sentinel_client,
)

pytestmark = pytest.mark.multihost

RUNBOOK = PROJECT_DIR / "docs" / "runbooks" / "redis-failover.md"
# A killed host of the shared lab also ran a PostgreSQL and an etcd member: after its restart
# the whole stack is healthy once Patroni has it following again.
HEALTHY_AGAIN_S = 360
WEBHOOK_PORT = 19500  # where the lab's Alertmanager sends (memops.lab.plan.WEBHOOK_PORT)

PREFIX = "memops"  # redis_app_key_prefix of the test settings
MASTER = "memops"


def ha_invoke(*args: str, timeout: float = 600) -> Any:
    return lab_invoke(*args, timeout=timeout, home=HA_LAB_HOME)


def health(stack: LabStack) -> tuple[int, dict[str, Any]]:
    run = ha_invoke("health", "--inventory", stack.lab.inventory, "--json", timeout=300)
    return run.returncode, run.json()


def _unhealthy(document: Any, path: str = "") -> dict[str, Any]:
    """The parts of a health document whose state is not healthy, by path, with reasons."""
    found: dict[str, Any] = {}
    if isinstance(document, dict):
        if document.get("state") not in (None, "healthy"):
            found[path or "stack"] = (document["state"], document.get("reason_codes"))
        for key, value in document.items():
            found |= _unhealthy(value, f"{path}/{key}")
    return found


def _wait_healthy(stack: LabStack, what: str) -> None:
    """Wait up to HEALTHY_AGAIN_S for `invoke health` to exit 0; say what was not, if not."""
    last: dict[str, Any] = {}

    def healthy() -> bool:
        code, document = health(stack)
        last["document"] = document
        return code == 0

    try:
        _wait_until(healthy, HEALTHY_AGAIN_S, what)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; not healthy: {_unhealthy(last.get('document'))}") from None


def _targets(stack: LabStack) -> tuple[list[RedisTarget], list[SentinelTarget]]:
    targets = load_targets(stack.lab.state_dir)
    nodes = [t for t in targets.components.values() if isinstance(t, RedisTarget)]
    sentinels = [t for t in targets.components.values() if isinstance(t, SentinelTarget)]
    return nodes, sentinels


def _sentinel(stack: LabStack) -> Sentinel:
    """redis-py's Sentinel client, as an application finds the primary."""
    return sentinel_client(load_targets(stack.lab.state_dir))


def _primary(stack: LabStack) -> tuple[str, int]:
    host, port = _sentinel(stack).discover_master(MASTER)
    return str(host), int(port)


def _node(stack: LabStack, address: tuple[str, int]) -> redis.Redis:
    nodes, _ = _targets(stack)
    return redis.Redis(
        host=address[0], port=address[1], password=nodes[0].password, socket_timeout=3
    )


def _host_named(stack: LabStack, address: str) -> str:
    return next(n for n, h in stack.lab.hosts.items() if h["address"] == address)


def _wait_until(check: Any, timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except (redis.RedisError, OSError) as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(0.5)
    raise AssertionError(f"{what}: not within {timeout_s:g}s (last: {last!r})")


# What a deploy may change after a switchover or failover: each node's replication part
# (the topology the Sentinels report) and the fingerprint that records it. Nothing restarts.
RECONCILE_TASKS = ("Write the replication part of", "Record the fingerprint of this healthy deploy")


def test_a_deploy_after_a_switchover_keeps_the_new_primary_and_the_next_changes_nothing(
    ha_stack: LabStack,
) -> None:
    # The first deploy's second run is proved by the PostgreSQL module; here the deploy an
    # operator runs after a failover must follow the Sentinels, never move the primary back.
    assert ha_stack.first_deploy["ok"] is True
    inventory = ha_stack.lab.inventory
    # The PostgreSQL module before this one killed hosts that run Redis nodes and Sentinels
    # too: health can pass while a restarted node is still being turned into a replica.
    _wait_until(lambda: _settled(ha_stack), 120, "the Redis tier settled")
    moved = ha_invoke("switchover", "--tier", "redis", "--yes", "--inventory", inventory)
    assert moved.returncode == 0, moved.stderr
    primary = _primary(ha_stack)
    reconcile = ha_invoke("deploy", "--inventory", inventory, "--json", timeout=1800)
    assert reconcile.returncode == 0, reconcile.stderr
    changed = [t["task"] for t in reconcile.json()["changed_tasks"]]
    assert all(any(mark in task for mark in RECONCILE_TASKS) for task in changed), changed
    assert _primary(ha_stack) == primary
    again = ha_invoke("deploy", "--inventory", inventory, "--json", timeout=1800)
    assert again.returncode == 0, again.stderr
    assert again.json()["changed"] == 0, again.json()["changed_tasks"]
    assert _primary(ha_stack) == primary


def test_health_names_the_primary_its_replicas_and_the_sentinels_quorum(
    ha_stack: LabStack,
) -> None:
    _wait_until(lambda: _settled(ha_stack), 120, "the Redis tier settled")
    code, document = health(ha_stack)
    assert code == 0, document
    components = document["components"]
    host, port = _primary(ha_stack)
    primary = f"{host}:{port}"
    roles = {
        name: c["details"].get("role")
        for name, c in components.items()
        if name.startswith("redis@")
    }
    assert sorted(roles.values()) == ["master", "slave", "slave"], roles
    for name, component in components.items():
        details = component["details"]
        if name.startswith("redis@") and details["role"] == "slave":
            assert f"{details['master_host']}:{details['master_port']}" == primary
            assert details["master_link_status"] == "up"
        if name.startswith("redis_sentinel@"):
            assert details["primary"] == primary
            assert details["other_sentinels"] == 2
            assert details["ckquorum"] == "OK"
    text = ha_invoke("health", "--inventory", ha_stack.lab.inventory)
    assert "primary (2 replicas)" in text.stdout, text.stdout


def _app_client(stack: LabStack, address: tuple[str, int]) -> redis.Redis:
    secret = stack.lab.state_dir / "secrets" / "redis_app_password"
    return redis.Redis(
        host=address[0],
        port=address[1],
        username="memory-service",
        password=secret.read_text(encoding="utf-8").strip(),
        socket_timeout=3,
    )


def _assert_hidden(stack: LabStack, node: RedisTarget, hidden: str, other: str) -> None:
    """The application user, on ``node``, is refused ``hidden`` and still reads ``other``."""
    app = _app_client(stack, (node.host, node.port))
    with pytest.raises(redis.exceptions.NoPermissionError):
        app.get(hidden)
    assert app.get(other) == b"ok"


def test_a_quarantine_holds_on_every_node_and_survives_a_switchover(ha_stack: LabStack) -> None:
    inventory = ha_stack.lab.inventory
    old = _primary(ha_stack)
    admin = _node(ha_stack, old)
    quarantined, other = f"{PREFIX}:memory:tenant-q:k", f"{PREFIX}:memory:tenant-ok:k"
    admin.set(quarantined, b"q")
    admin.set(other, b"ok")
    admin.execute_command("WAIT", 2, 2000)
    done = ha_invoke(
        "rebuild.quarantine", "tenant-q", "--tier", "redis", "--yes", "--inventory", inventory
    )
    assert done.returncode == 0, done.stderr
    nodes, _ = _targets(ha_stack)
    for node in nodes:  # every node refuses the application the quarantined namespace
        _assert_hidden(ha_stack, node, quarantined, other)

    candidate = next(n for n in nodes if (n.host, n.port) != old)
    to_host = _host_named(ha_stack, candidate.host)
    dry = ha_invoke(
        "switchover", "--tier", "redis", "--to", to_host, "--dry-run", "--inventory", inventory
    )
    assert dry.returncode == 0, dry.stderr
    assert _primary(ha_stack) == old  # a dry run changes nothing
    refused = ha_invoke(
        "switchover", "--tier", "redis", "--to", "no-such-host", "--yes", "--inventory", inventory
    )
    assert refused.returncode == 2 and "no Redis node" in refused.stderr, refused.stderr
    switched = ha_invoke(
        "switchover",
        "--tier",
        "redis",
        "--to",
        to_host,
        "--yes",
        "--json",
        "--inventory",
        inventory,
    )
    assert switched.returncode == 0, switched.stderr
    document = switched.json()
    assert document["new"] == candidate.endpoint, document
    assert _primary(ha_stack) == (candidate.host, candidate.port)
    code, _health = health(ha_stack)
    assert code == 0, _health

    _assert_hidden(ha_stack, candidate, quarantined, other)
    new_app = _app_client(ha_stack, (candidate.host, candidate.port))
    released = ha_invoke(
        "rebuild.release", "tenant-q", "--tier", "redis", "--yes", "--inventory", inventory
    )
    assert released.returncode == 0, released.stderr
    assert new_app.get(quarantined) == b"q"


def test_a_quarantine_with_a_replica_down_holds_on_the_rest_and_the_next_run_finishes_it(
    ha_stack: LabStack,
) -> None:
    inventory = ha_stack.lab.inventory
    primary = _primary(ha_stack)
    nodes, _ = _targets(ha_stack)
    down = next(n for n in nodes if (n.host, n.port) != primary)
    down_host = _host_named(ha_stack, down.host)
    admin = _node(ha_stack, primary)
    hidden, other = f"{PREFIX}:memory:tenant-r:k", f"{PREFIX}:memory:tenant-ok2:k"
    admin.set(hidden, b"r")
    admin.set(other, b"ok")
    admin.execute_command("WAIT", 2, 2000)
    quarantine = ("rebuild.quarantine", "tenant-r", "--tier", "redis", "--yes")
    stopped = ha_stack.lab.ssh(down_host, "systemctl stop redis-memops")
    assert stopped.returncode == 0, stopped.stderr
    try:
        first = ha_invoke(*quarantine, "--inventory", inventory)
        assert first.returncode == 1, (first.stdout, first.stderr)
        assert "still open: redis" in first.stderr, first.stderr
        assert f"not changed: {down.endpoint}" in first.stdout, first.stdout
        for node in nodes:  # every node that answers is quarantined already
            if node.endpoint != down.endpoint:
                _assert_hidden(ha_stack, node, hidden, other)
    finally:
        started = ha_stack.lab.ssh(down_host, "systemctl start redis-memops")
    assert started.returncode == 0, started.stderr
    _wait_until(lambda: _settled(ha_stack), 120, "the stopped replica back in sync")

    finished = ha_invoke(*quarantine, "--inventory", inventory)
    assert finished.returncode == 0, finished.stderr
    for node in nodes:
        _assert_hidden(ha_stack, node, hidden, other)
    released = ha_invoke(
        "rebuild.release", "tenant-r", "--tier", "redis", "--yes", "--inventory", inventory
    )
    assert released.returncode == 0, released.stderr
    for node in nodes:
        assert _app_client(ha_stack, (node.host, node.port)).get(hidden) == b"r", node.endpoint


def _replica_priority(stack: LabStack, address: tuple[str, int]) -> int:
    return int(_node(stack, address).config_get("replica-priority")["replica-priority"])


def _settled(stack: LabStack) -> bool:
    """Quiet twice, a second apart: a failover the killed run asked for may be starting."""
    targets = load_targets(stack.lab.state_dir)
    if not redis_settled(targets):
        return False
    time.sleep(1)
    return redis_settled(targets)


def test_a_switchover_killed_while_its_replica_is_preferred_is_finished_by_the_next(
    ha_stack: LabStack,
) -> None:
    inventory = ha_stack.lab.inventory
    nodes, _ = _targets(ha_stack)
    old = _primary(ha_stack)
    candidate = next(n for n in nodes if (n.host, n.port) != old)
    address = (candidate.host, candidate.port)
    to_host = _host_named(ha_stack, candidate.host)
    run = subprocess.Popen(
        [
            INVOKE,
            "switchover",
            "--tier",
            "redis",
            "--to",
            to_host,
            "--yes",
            "--inventory",
            inventory,
        ],
        cwd=PROJECT_DIR,
        env={**os.environ, "MEMOPS_LAB_DIR": str(HA_LAB_HOME)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:  # kill -9 the whole task between preferring the replica and putting it back
        _wait_until(lambda: _replica_priority(ha_stack, address) == 1, 120, "replica preferred")
    finally:
        os.killpg(run.pid, 9)
        run.wait()
    assert _replica_priority(ha_stack, address) == 1  # the kill left the window open
    _wait_until(lambda: _settled(ha_stack), 120, "the tier settled after the kill")

    dry = ha_invoke(
        "switchover", "--tier", "redis", "--dry-run", "--json", "--inventory", inventory
    )
    assert dry.returncode == 0, dry.stderr
    assert dry.json()["left_preferred"] == [candidate.endpoint]
    assert _replica_priority(ha_stack, address) == 1  # a dry run changes nothing

    finished = ha_invoke("switchover", "--tier", "redis", "--yes", "--inventory", inventory)
    assert finished.returncode == 0, finished.stderr  # the killed run's lock died with it
    for node in nodes:
        assert _replica_priority(ha_stack, (node.host, node.port)) == 100, node.endpoint
    code, document = health(ha_stack)
    assert code == 0, document


def test_a_backup_reads_a_replica_and_a_restore_writes_the_primary(ha_stack: LabStack) -> None:
    inventory = ha_stack.lab.inventory
    primary = _node(ha_stack, _primary(ha_stack))
    keys = {f"{PREFIX}:memory:tenant-b:chat:{n}": f"b-{n}".encode() for n in range(20)}
    primary.mset(keys)
    primary.execute_command("WAIT", 2, 2000)
    made = ha_invoke(
        "backup.create", "--tier", "redis", "--namespace", "tenant-b", "--inventory", inventory
    )
    assert made.returncode == 0, made.stderr
    assert "(read from replica " in made.stdout, made.stdout
    set_id = made.stdout.split()[2]
    primary.delete(*keys)
    restored = ha_invoke(
        "backup.restore",
        set_id,
        "--tier",
        "redis",
        "--namespace",
        "tenant-b",
        "--yes",
        "--inventory",
        inventory,
    )
    assert restored.returncode == 0, restored.stderr
    assert primary.mget(list(keys)) == list(keys.values())
    primary.execute_command("WAIT", 2, 2000)
    for node in _targets(ha_stack)[0]:  # the replicas follow the restored primary
        assert _node(ha_stack, (node.host, node.port)).mget(list(keys)) == list(keys.values())
    primary.delete(*keys)


def test_a_replica_cut_off_from_its_primary_fires_the_replication_alert(
    ha_stack: LabStack,
) -> None:
    """The replica's link really breaks: a wrong masterauth, then its link killed. The alert
    names that replica; with the right password back it re-links and the alert resolves."""
    lab = ha_stack.lab
    primary = _primary(ha_stack)
    nodes, _ = _targets(ha_stack)
    replica = next(n for n in nodes if (n.host, n.port) != primary)
    client = _node(ha_stack, (replica.host, replica.port))
    instance = f"{_host_named(ha_stack, replica.host)}:{replica.port}"
    with WebhookReceiver(lab.gateway, WEBHOOK_PORT) as webhook:
        cut_at = time.monotonic()
        client.config_set("masterauth", "not-the-password")
        client.client_kill_filter(_type="master")
        try:
            note = webhook.wait_for(
                "RedisReplicationLinkDown", "firing", timeout_s=180, since=cut_at
            )
            assert note is not None, "RedisReplicationLinkDown never reached the webhook"
            fired = [
                a
                for a in note.body["alerts"]
                if a["labels"]["alertname"] == "RedisReplicationLinkDown"
            ]
            assert {a["labels"]["instance"] for a in fired} == {instance}, fired
        finally:
            client.config_set("masterauth", replica.password)
            client.client_kill_filter(_type="master")
        _wait_until(
            lambda: _rejoined(ha_stack, (replica.host, replica.port), primary), 60, "re-linked"
        )


def test_the_failover_runbook_runs_as_typed(ha_stack: LabStack) -> None:
    """docs/runbooks/redis-failover.md, every step as typed; section 3 after a real kill of
    the primary's host, its second step once the host is back and has rejoined."""
    lab = ha_stack.lab
    sections = parse(RUNBOOK.read_text(), heading="## ")
    assert [s.title for s in sections] == [
        "1. Who is the primary",
        "2. Planned switchover",
        "3. After an unplanned failover",
    ]
    values: dict[str, str] = {}
    inventory = Path(lab.inventory)

    def run(step: Any) -> None:
        check_output(step, run_invoke(step, values, inventory, lab.state_dir), values, ())

    for step in sections[0].steps + sections[1].steps:
        run(step)
    old = _primary(ha_stack)
    container = _container(ha_stack, _host_named(ha_stack, old[0]))
    container.kill()
    try:
        new = _wait_until(lambda: (p := _primary(ha_stack)) != old and p, 90, "a new primary")
        _wait_until(
            lambda: _node(ha_stack, new).info("replication").get("connected_slaves") == 1,
            60,
            "the other replica following the new primary",
        )
        first, *rest = sections[2].steps
        run(first)
    finally:
        container.start()
    _wait_until(lambda: _rejoined(ha_stack, old, new), 120, "the old primary back as a replica")
    # The host also runs a PostgreSQL member and an etcd member: Patroni rejoins it (pg_rewind
    # when it led), which takes longer than Redis.
    _wait_healthy(ha_stack, "a healthy stack again")
    for step in rest:
        run(step)


def _container(stack: LabStack, host: str) -> Any:
    engine = find_engine(lab_cache())
    assert engine is not None
    return engine.client.containers.get(host)


def _rejoined(stack: LabStack, node: tuple[str, int], primary: tuple[str, int]) -> bool:
    target = next(n for n in _targets(stack)[0] if (n.host, n.port) == node)
    return rejoined(target, primary)


def test_a_killed_primary_host_is_replaced_by_a_replica_without_losing_an_acknowledged_write(
    ha_stack: LabStack,
) -> None:
    lab = ha_stack.lab
    old = _primary(ha_stack)
    old_host = _host_named(ha_stack, old[0])
    container = _container(ha_stack, old_host)
    targets = load_targets(lab.state_dir)
    writer = AcknowledgedWriter(targets, f"{PREFIX}:memory:failover")
    writer.start()
    try:
        _wait_until(lambda: len(writer.acknowledged) >= 50, 30, "writes before the kill")
        killed_at = time.monotonic()
        container.kill()
        new = _wait_until(lambda: (p := _primary(ha_stack)) != old and p, 90, "a new primary")
        _wait_until(
            lambda: writer.first_ack_after(killed_at, not_on=old) is not None,
            90,
            "acknowledged writes on the new primary",
        )
    finally:
        writer.stop()
    assert new != old
    new_target = next(n for n in _targets(ha_stack)[0] if (n.host, n.port) == new)
    assert len(writer.acknowledged) > 50
    lost = writer.lost_on(new_target)
    assert not lost, f"{len(lost)} acknowledged writes lost of {len(writer.acknowledged)}"

    _code, document = health(ha_stack)  # the killed node fails; health names the new primary
    new_name = f"redis@{_host_named(ha_stack, new[0])}"
    assert document["components"][new_name]["details"]["role"] == "master", document
    killed = document["components"][f"redis@{old_host}"]
    assert killed["state"] in ("degraded", "failing"), killed  # failing from the third cycle
    assert "host_unreachable" in killed["reason_codes"], killed

    container.start()  # systemd starts Redis; the Sentinels make it a replica of the new primary
    _wait_until(lambda: _rejoined(ha_stack, old, new), 120, f"{old_host} back as a replica")
    old_target = next(n for n in _targets(ha_stack)[0] if (n.host, n.port) == old)
    assert not writer.lost_on(old_target)  # it resynchronised from the new primary
    lab.ssh(old_host, "true")  # its host answers again
    _wait_healthy(ha_stack, "a healthy stack again")


def test_the_failover_benchmark_runs_at_a_tiny_size(ha_stack: LabStack) -> None:
    """benchmarks/failover.py on this lab, one run (its tiny run: a lab of its own would
    cost CI another deploy); the figures themselves go into closing notes."""
    run = subprocess.run(
        [
            sys.executable,
            str(PROJECT_DIR / "benchmarks" / "failover.py"),
            "--inventory",
            ha_stack.lab.inventory,
            "--runs",
            "1",
        ],
        cwd=PROJECT_DIR,
        env={**os.environ, "MEMOPS_LAB_DIR": str(HA_LAB_HOME)},
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout)
    print(json.dumps(result))
    assert result["ratio_max"] > 0 and result["lost_total"] == 0, result
    assert set(result["tiers"]) == {"redis", "postgresql"}, result
    assert all(t["runs"][0]["acknowledged"] > 50 for t in result["tiers"].values()), result
    _wait_healthy(ha_stack, "a healthy stack after the benchmark")
