"""A replicated Redis tier on the lab: a primary, two replicas and three Sentinels.

The proofs of issue #25's Redis half, with the commands users type: the Sentinels find
each other and agree on the primary; health names every node's part; a quarantine is in
force on every node, so it survives a switchover; a killed primary's host is replaced by
a replica without losing a write a replica acknowledged (WAIT), and it comes back as a
replica. The kill runs last: it is the one that changes the most.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
import redis
from lab_helpers import HA_LAB_HOME, LabStack, lab_invoke
from redis.sentinel import Sentinel

from memops.deploy.targets import RedisTarget, SentinelTarget, load_targets
from memops.lab.engine import find_engine
from memops.lab.lifecycle import lab_cache

pytestmark = pytest.mark.multihost

PREFIX = "memops"  # redis_app_key_prefix of the test settings
MASTER = "memops"


def ha_invoke(*args: str, timeout: float = 600) -> Any:
    return lab_invoke(*args, timeout=timeout, home=HA_LAB_HOME)


def health(stack: LabStack) -> tuple[int, dict[str, Any]]:
    run = ha_invoke("health", "--inventory", stack.lab.inventory, "--json", timeout=300)
    return run.returncode, run.json()


def _targets(stack: LabStack) -> tuple[list[RedisTarget], list[SentinelTarget]]:
    targets = load_targets(stack.lab.state_dir)
    nodes = [t for t in targets.components.values() if isinstance(t, RedisTarget)]
    sentinels = [t for t in targets.components.values() if isinstance(t, SentinelTarget)]
    return nodes, sentinels


def _sentinel(stack: LabStack) -> Sentinel:
    """redis-py's Sentinel client, as an application finds the primary."""
    nodes, sentinels = _targets(stack)
    return Sentinel(
        [(s.host, s.port) for s in sentinels],
        sentinel_kwargs={"password": sentinels[0].password, "socket_timeout": 1},
        password=nodes[0].password,
        socket_timeout=2,
        socket_connect_timeout=1,
    )


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


def test_the_replicated_tier_deploys_and_a_second_deploy_changes_nothing(
    ha_stack: LabStack,
) -> None:
    assert ha_stack.first_deploy["ok"] is True
    again = ha_invoke("deploy", "--inventory", ha_stack.lab.inventory, "--json", timeout=1800)
    assert again.returncode == 0, again.stderr
    assert again.json()["changed"] == 0


def test_health_names_the_primary_its_replicas_and_the_sentinels_quorum(
    ha_stack: LabStack,
) -> None:
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
        app = _app_client(ha_stack, (node.host, node.port))
        with pytest.raises(redis.exceptions.NoPermissionError):
            app.get(quarantined)
        assert app.get(other) == b"ok"

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

    new_app = _app_client(ha_stack, (candidate.host, candidate.port))
    with pytest.raises(redis.exceptions.NoPermissionError):
        new_app.get(quarantined)
    assert new_app.get(other) == b"ok"
    released = ha_invoke(
        "rebuild.release", "tenant-q", "--tier", "redis", "--yes", "--inventory", inventory
    )
    assert released.returncode == 0, released.stderr
    assert new_app.get(quarantined) == b"q"


class _AcknowledgedWriter(threading.Thread):
    """Writes key n = value n through the Sentinels' primary; a write counts once WAIT says a
    replica has it. Keeps writing across the failover (the client asks the Sentinels again)."""

    def __init__(self, stack: LabStack) -> None:
        super().__init__(daemon=True)
        self.stack = stack
        self.acknowledged: dict[str, bytes] = {}
        self.ack_times: list[float] = []
        self.errors = 0
        self.stop = threading.Event()

    def run(self) -> None:
        sentinel = _sentinel(self.stack)
        n = 0
        while not self.stop.is_set():
            key, value = f"{PREFIX}:memory:failover:{n}", f"value-{n}".encode()
            try:
                primary = sentinel.master_for(MASTER, socket_timeout=1, socket_connect_timeout=1)
                primary.set(key, value)
                if int(primary.execute_command("WAIT", 1, 1000)) >= 1:
                    self.acknowledged[key] = value
                    self.ack_times.append(time.monotonic())
            except (redis.RedisError, OSError):
                self.errors += 1
                time.sleep(0.1)
            n += 1


def test_a_killed_primary_host_is_replaced_by_a_replica_without_losing_an_acknowledged_write(
    ha_stack: LabStack,
) -> None:
    lab = ha_stack.lab
    old = _primary(ha_stack)
    old_host = _host_named(ha_stack, old[0])
    engine = find_engine(lab_cache())
    assert engine is not None
    container = engine.client.containers.get(old_host)
    writer = _AcknowledgedWriter(ha_stack)
    writer.start()
    try:
        _wait_until(lambda: len(writer.acknowledged) >= 50, 30, "writes before the kill")
        killed_at = time.monotonic()
        container.kill()
        new = _wait_until(lambda: (p := _primary(ha_stack)) != old and p, 90, "a new primary")
        _wait_until(
            lambda: writer.ack_times and writer.ack_times[-1] > killed_at + 1,
            90,
            "acknowledged writes on the new primary",
        )
    finally:
        writer.stop.set()
        writer.join(timeout=10)
    assert new != old
    new_primary = _node(ha_stack, new)
    values = new_primary.mget(list(writer.acknowledged))
    lost = [
        k for k, v in zip(writer.acknowledged, values, strict=True) if v != writer.acknowledged[k]
    ]
    assert not lost, f"{len(lost)} acknowledged writes lost of {len(writer.acknowledged)}"

    _code, document = health(ha_stack)  # the killed node fails; health names the new primary
    new_name = f"redis@{_host_named(ha_stack, new[0])}"
    assert document["components"][new_name]["details"]["role"] == "master", document
    assert document["components"][f"redis@{old_host}"]["state"] == "failing"

    container.start()  # systemd starts Redis; the Sentinels make it a replica of the new primary
    old_node = _node(ha_stack, old)

    def rejoined() -> bool:
        info = old_node.info("replication")
        return (
            info.get("role") == "slave"
            and (info.get("master_host"), int(info.get("master_port", 0))) == new
            and info.get("master_link_status") == "up"
        )

    _wait_until(rejoined, 120, f"{old_host} back as a replica of {new[0]}")
    assert old_node.mget(list(writer.acknowledged)) == list(writer.acknowledged.values())
    lab.ssh(old_host, "true")  # its host answers again
    _wait_until(lambda: health(ha_stack)[0] == 0, 120, "a healthy stack again")
