"""Backups of the deployed test stack, through the tasks a person or a cron job types.

Every tier is the real service the test inventory deploys (Redis with AOF on,
PostgreSQL 15, the Qdrant stand-in). The data is the workload generator's,
hostile tenant names included (``glob*star``, ``[brackets]``, ``acme`` next to
``acme:eu``). A round trip compares a dump of the data before with one after.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from integration_helpers import REDIS_PIDFILE, TEST_INVENTORY, DeployedStack, invoke, pidfile_daemon
from qdrant_client import models

from memops.deploy.inventory import resolve_inventory
from memops.deploy.playbook import PlaybookOptions, run_playbook
from memops.testing import workload as wl

pytestmark = pytest.mark.integration

COLLECTION = "memory_backup_test"
PROMETHEUS = "http://127.0.0.1:29090"
TTL_SLACK_MS = 1000


@pytest.fixture(scope="module")
def load(deployed_stack: DeployedStack) -> wl.Workload:
    data = wl.generate(seed=3535, tenants=3, items_per_tenant=12)
    clients = deployed_stack.clients
    redis = clients.redis()
    for tenant in data.tenants:
        for key in redis.scan_iter(match=wl.namespace_pattern(data.prefix, tenant)):
            redis.delete(key)
    wl.write_redis(redis, data)
    with clients.postgresql() as conn:
        conn.execute("DELETE FROM memory_items WHERE tenant_id = ANY(%s)", [list(data.tenants)])
        wl.write_postgres(conn, data)
    qdrant = clients.qdrant()
    if qdrant.collection_exists(COLLECTION):
        qdrant.delete_collection(COLLECTION)
    wl.write_qdrant(qdrant, data, COLLECTION)
    return data


def snapshot(stack: DeployedStack, load: wl.Workload, tenants: Any = None) -> dict[str, Any]:
    """Everything the tenants hold in the three tiers; Redis TTLs kept apart (they tick)."""
    chosen = list(load.tenants if tenants is None else tenants)
    redis = stack.clients.redis()
    values: dict[str, str] = {}
    for tenant in chosen:
        values |= {k: v for k, (v, _ttl) in wl.read_redis(redis, load.prefix, tenant).items()}
    pipe = redis.pipeline(transaction=False)
    for key in values:
        pipe.execute_command("PEXPIRETIME", key)  # absolute: it does not tick
    ttls = dict(zip(values, pipe.execute(), strict=True))
    with stack.clients.postgresql() as conn:
        rows = wl.read_postgres(conn, chosen)
    points = wl.read_qdrant(stack.clients.qdrant(), COLLECTION, chosen)
    return {"redis": values, "ttl": ttls, "postgresql": rows, "qdrant": points}


def same(before: dict[str, Any], after: dict[str, Any]) -> None:
    assert after["postgresql"] == before["postgresql"]
    assert after["qdrant"] == before["qdrant"]
    same_redis(before, after)


def same_redis(before: dict[str, Any], after: dict[str, Any]) -> None:
    assert after["redis"] == before["redis"]
    assert after["ttl"].keys() == before["ttl"].keys()
    for key, expiry in before["ttl"].items():
        assert abs(after["ttl"][key] - expiry) <= TTL_SLACK_MS, key


def damage(stack: DeployedStack, load: wl.Workload, tenants: list[str]) -> None:
    redis = stack.clients.redis()
    for tenant in tenants:
        for key in redis.scan_iter(match=wl.namespace_pattern(load.prefix, tenant)):
            redis.delete(key)
    with stack.clients.postgresql() as conn:
        conn.execute("DELETE FROM memory_items WHERE tenant_id = ANY(%s)", [tenants])
    stack.clients.qdrant().delete(
        COLLECTION,
        points_selector=models.FilterSelector(
            filter=models.Filter(
                must=[models.FieldCondition(key="tenant_id", match=models.MatchAny(any=tenants))]
            )
        ),
    )


def create_set(*args: str) -> str:
    run = invoke("backup.create", "--inventory", TEST_INVENTORY, "--json", *args)
    assert run.returncode == 0, run.stderr
    document = run.json()
    assert document["verify"]["ok"] is True
    assert set(document["tiers"]) == {"redis", "postgresql", "qdrant"}
    return str(document["set_id"])


def restore(set_id: str, *args: str) -> dict[str, Any]:
    run = invoke(
        "backup.restore",
        set_id,
        "--inventory",
        TEST_INVENTORY,
        "--yes",
        "--json",
        *args,
        timeout=900,
    )
    assert run.returncode == 0, run.stderr
    document: dict[str, Any] = run.json()
    return document


def test_whole_round_trip_of_postgresql_and_qdrant(
    deployed_stack: DeployedStack, load: wl.Workload
) -> None:
    before = snapshot(deployed_stack, load)
    set_id = create_set()
    damage(deployed_stack, load, list(load.tenants))
    redis_after_damage = snapshot(deployed_stack, load)["redis"]

    document = restore(set_id, "--tier", "postgresql,qdrant")
    after = snapshot(deployed_stack, load)
    assert after["postgresql"] == before["postgresql"]
    assert after["qdrant"] == before["qdrant"]
    assert after["redis"] == redis_after_damage  # --tier left Redis alone
    assert document["reports"]["postgresql"]["old_database"]
    with deployed_stack.clients.postgresql() as conn:  # as locked down as the role leaves it
        query = "SELECT has_database_privilege('public', current_database(), 'CONNECT')"
        assert conn.execute(query).fetchone()[0] is False


def test_a_whole_live_redis_restore_with_aof_on_survives_a_restart(
    deployed_stack: DeployedStack, load: wl.Workload
) -> None:
    """The role runs Redis with AOF on: the restored data must be what a restart loads."""
    redis = deployed_stack.clients.redis()
    wl.write_redis(redis, load)  # the round trip above left Redis damaged
    before = snapshot(deployed_stack, load)
    assert before["redis"]
    set_id = create_set()
    lost = list(redis.scan_iter(match=wl.namespace_pattern(load.prefix, load.tenants[0])))
    redis.delete(*lost)
    late = f"{load.prefix}:memory:late:session:{time.time_ns()}"  # in no earlier set
    redis.set(late, "written after the set")

    document = restore(set_id, "--tier", "redis")
    report = document["reports"]["redis"]
    assert report["whole"]["deleted"] == 1 and "AOF on" in report["aof"]
    same_redis(before, snapshot(deployed_stack, load))
    assert deployed_stack.clients.redis().exists(late) == 0

    pidfile_daemon("stop", REDIS_PIDFILE)
    restarted = invoke("deploy", "--inventory", TEST_INVENTORY, "--tags", "redis", "--json")
    assert restarted.returncode == 0, restarted.stderr
    same_redis(before, snapshot(deployed_stack, load))  # loaded from the AOF at start-up
    assert deployed_stack.clients.redis().exists(late) == 0


def test_namespace_restore_touches_only_that_tenant(
    deployed_stack: DeployedStack, load: wl.Workload
) -> None:
    assert "acme" in load.tenants and "acme:eu" in load.tenants
    chosen = "acme"
    before = snapshot(deployed_stack, load, [chosen])
    set_id = create_set()
    others = [t for t in load.tenants if t != chosen]
    damage(deployed_stack, load, [chosen, *others[:3], "acme:eu"])
    untouched = snapshot(deployed_stack, load, others)

    restore(set_id, "--namespace", chosen)
    same(before, snapshot(deployed_stack, load, [chosen]))
    same(untouched, snapshot(deployed_stack, load, others))


def test_the_drill_passes_on_the_newest_set(deployed_stack: DeployedStack) -> None:
    run = invoke("backup.drill", "--inventory", TEST_INVENTORY, "--json", timeout=900)
    report = run.json()
    assert set(report["tiers"]) == {"redis", "postgresql", "qdrant"}, run.stderr
    assert all(tier["ok"] for tier in report["tiers"].values()), report
    # The test stack's data is written tier by tier by several tests, so rows and points
    # need not pair up; the per-tier comparison above must hold either way.
    assert run.returncode == 0 or report["failed_tier"] == "cross-tier", run.stderr


@pytest.fixture
def every_minute(deployed_stack: DeployedStack) -> Iterator[None]:
    inventory = resolve_inventory(TEST_INVENTORY)

    def schedule(enabled: bool) -> None:
        result = run_playbook(
            "deploy",
            inventory,
            PlaybookOptions(
                tags="backup_schedule",
                extra_vars={
                    "memops_backup_schedule_enabled": enabled,
                    "memops_backup_schedule_backup_minute": "*",
                    # Health cycles of its own would race the other modules' state.json.
                    "memops_backup_schedule_health_enabled": False,
                },
            ),
            echo=False,
        )
        assert result.ok, result.error_line

    schedule(True)
    try:
        yield
    finally:
        schedule(False)


def _sets() -> set[str]:
    run = invoke("backup.list", "--inventory", TEST_INVENTORY, "--json")
    assert run.returncode == 0, run.stderr
    return {s["set_id"] for s in run.json()["sets"]}


def test_the_schedule_takes_a_verified_set_that_prometheus_scrapes(every_minute: None) -> None:
    earlier = _sets()
    started = time.time()
    deadline = time.monotonic() + 150
    new: set[str] = set()
    while not new and time.monotonic() < deadline:
        time.sleep(5)
        new = _sets() - earlier
    assert new, "cron took no backup within two minutes"
    set_id = sorted(new)[-1]
    assert invoke("backup.verify", set_id, "--inventory", TEST_INVENTORY).returncode == 0

    query = 'min(memops_backup_last_success_timestamp_seconds{tier=~"redis|postgresql|qdrant"})'
    value = 0.0
    while time.monotonic() < deadline + 60:
        result = httpx.get(f"{PROMETHEUS}/api/v1/query", params={"query": query}, timeout=10)
        samples = result.json()["data"]["result"]
        value = float(samples[0]["value"][1]) if samples else 0.0
        if value >= started:
            break
        time.sleep(3)
    assert value >= started, "Prometheus does not see the scheduled backup's metrics"
