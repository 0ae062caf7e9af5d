"""The staging shape on four container hosts: deployed over SSH with systemd as PID 1.

One host per tier (redis, postgresql, qdrant) and one for the monitoring, as the
staging and production inventories have them; everything through the commands
users type. The host-stop test runs last: it is the only one that breaks the lab.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
from integration.webhook_receiver import WebhookReceiver
from lab_helpers import LAB_UP, LabStack, lab_invoke
from qdrant_client import models

from memops.clients import StackClients
from memops.deploy.targets import load_targets
from memops.lab.engine import find_engine
from memops.lab.lifecycle import lab_cache
from memops.testing import workload as wl

pytestmark = pytest.mark.multihost

COLLECTION = "memory_lab_test"
UNITS = {
    "redis": ["redis-memops"],
    "postgresql": ["postgresql@15-memops"],
    "qdrant": ["qdrant-memops"],
    "monitoring": [
        "memops-prometheus-memops",
        "memops-alertmanager-memops",
        "memops-redis-exporter-memops",
        "memops-postgres-exporter-memops",
    ],
}
WEBHOOK_PORT = 19500


def web_auth(stack: LabStack) -> tuple[str, str]:
    """The basic-auth credentials of the monitoring's listeners (the lab inventory's secret)."""
    secret = stack.lab.state_dir / "secrets" / "memops_web_password"
    return "memops", secret.read_text(encoding="utf-8").strip()


def health(stack: LabStack) -> tuple[int, dict[str, Any]]:
    run = lab_invoke("health", "--inventory", stack.lab.inventory, "--json", timeout=300)
    return run.returncode, run.json()


def test_the_lab_deploys_from_nothing_and_a_second_deploy_changes_nothing(
    lab_stack: LabStack,
) -> None:
    assert lab_stack.first_deploy["ok"] is True
    assert lab_stack.first_deploy["changed"] > 0
    again = lab_invoke("deploy", "--inventory", lab_stack.lab.inventory, "--json")
    assert again.returncode == 0, again.stderr
    assert again.json()["changed"] == 0


def test_each_tier_runs_as_a_systemd_unit_on_its_own_host(lab_stack: LabStack) -> None:
    lab = lab_stack.lab
    every_unit = [unit for units in UNITS.values() for unit in units]
    for group, units in UNITS.items():
        host = lab.host_of(group)
        assert lab.ssh(host, "systemctl is-system-running --wait").stdout.strip() in {
            "running",
            "degraded",
        }
        for unit in units:
            state = lab.ssh(host, f"systemctl is-active {unit}").stdout.strip()
            assert state == "active", f"{unit} on {host}: {state}"
        # nothing of another tier on this host
        for unit in set(every_unit) - set(units):
            state = lab.ssh(host, f"systemctl is-active {unit}").stdout.strip()
            assert state != "active", f"{unit} runs on {host}, which is not its host"


def test_health_probes_each_component_where_it_runs(lab_stack: LabStack) -> None:
    code, document = health(lab_stack)
    assert code == 0, document
    assert {c["state"] for c in document["components"].values()} == {"healthy"}
    lab = lab_stack.lab
    targets = load_targets(lab.state_dir).components
    assert targets["redis"].host == lab.address_of("redis")
    assert targets["postgresql"].host == lab.address_of("postgresql")
    assert lab.address_of("qdrant") in targets["qdrant"].endpoint
    assert lab.address_of("monitoring") in targets["prometheus"].endpoint
    # node_exporter on every host, probed on each
    assert {name for name in targets if name.startswith("node_exporter")} == {
        f"node_exporter@{host}" for host in lab.hosts
    }


def test_prometheus_scrapes_every_target_of_every_host(lab_stack: LabStack) -> None:
    lab = lab_stack.lab
    url = f"http://{lab.address_of('monitoring')}:19090/api/v1/targets"
    deadline = time.monotonic() + 60
    targets: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        reply = httpx.get(url, timeout=5, auth=web_auth(lab_stack))
        targets = reply.json()["data"]["activeTargets"]
        if targets and all(t["health"] == "up" for t in targets):
            break
        time.sleep(2)
    down = [
        (t["labels"]["job"], t["scrapeUrl"], t["lastError"]) for t in targets if t["health"] != "up"
    ]
    assert not down
    jobs = {t["labels"]["job"] for t in targets}
    assert {"prometheus", "alertmanager", "node", "redis", "postgresql", "qdrant"} <= jobs
    node_hosts = {
        t["scrapeUrl"].split("/")[2].split(":")[0] for t in targets if t["labels"]["job"] == "node"
    }
    assert node_hosts == {host["address"] for host in lab.hosts.values()}


def test_the_monitoring_listeners_on_host_addresses_require_basic_auth(
    lab_stack: LabStack,
) -> None:
    """node_exporter (every host), postgres_exporter, Prometheus and Alertmanager listen on
    their host's address: 401 without credentials, 200 with them; Prometheus scrapes them all
    with the password file (every target up). redis_exporter (1.45) has no basic auth."""
    lab = lab_stack.lab
    monitoring = lab.address_of("monitoring")
    urls = [f"http://{host['address']}:19100/metrics" for host in lab.hosts.values()] + [
        f"http://{monitoring}:19187/metrics",
        f"http://{monitoring}:19090/-/ready",
        f"http://{monitoring}:19090/api/v1/targets",
        f"http://{monitoring}:19093/-/ready",
        f"http://{monitoring}:19093/api/v2/status",
    ]
    auth = web_auth(lab_stack)
    for url in urls:
        assert httpx.get(url, timeout=5).status_code == 401, url
        assert httpx.get(url, timeout=5, auth=("memops", "not-the-password")).status_code == 401
        assert httpx.get(url, timeout=5, auth=auth).status_code == 200, url
    assert httpx.get(f"http://{monitoring}:19121/metrics", timeout=5).status_code == 200

    # the web config files: 0640 root:prometheus, on every host for node_exporter
    files = {host: ["/etc/memops-monitoring/memops/node_exporter/web.yml"] for host in lab.hosts}
    files[lab.host_of("monitoring")] += [
        f"/etc/memops-monitoring/memops/{name}/web.yml"
        for name in ("postgres_exporter", "prometheus", "alertmanager")
    ] + ["/etc/memops-monitoring/memops/prometheus/web_password"]
    for host, paths in files.items():
        for path in paths:
            seen = lab.ssh(host, f"stat -c '%a %U:%G' {path}").stdout.strip()
            assert seen == "640 root:prometheus", (host, path, seen)

    # Grafana's datasource (provisioned, not installed here) sends the credentials too
    datasource = "/etc/grafana/provisioning/datasources/memops-memops.yml"
    seen = lab.ssh(lab.host_of("monitoring"), f"stat -c '%a' {datasource}; cat {datasource}")
    assert seen.stdout.startswith("640\n") and "basicAuth: true" in seen.stdout, seen.stdout

    deadline = time.monotonic() + 60
    targets: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        reply = httpx.get(f"http://{monitoring}:19090/api/v1/targets", timeout=5, auth=auth)
        targets = reply.json()["data"]["activeTargets"]
        if targets and all(t["health"] == "up" for t in targets):
            break
        time.sleep(2)
    assert targets and [t["lastError"] for t in targets if t["health"] != "up"] == []
    # Prometheus pushes its alerts to Alertmanager with the password too
    reply = httpx.get(f"http://{monitoring}:19090/api/v1/alertmanagers", timeout=5, auth=auth)
    assert [a["url"] for a in reply.json()["data"]["activeAlertmanagers"]] != []

    # targets.json carries the credentials in the URLs; the health probes pass with them
    targets_json = load_targets(lab.state_dir).components
    for name in ("prometheus", "alertmanager", "postgres_exporter"):
        assert "memops:" in targets_json[name].url, name  # type: ignore[union-attr]
        assert auth[1] not in targets_json[name].endpoint, name


def _load(clients: StackClients) -> wl.Workload:
    """The workload's tenants in every tier, written afresh (a test before may have left them)."""
    data = wl.generate(seed=2424, tenants=3, items_per_tenant=8)
    for tenant in data.tenants:
        _damage(clients, data, tenant, collection=False)
    wl.write_redis(clients.redis(), data)
    with clients.postgresql() as conn:
        wl.write_postgres(conn, data)
    qdrant = clients.qdrant()
    if qdrant.collection_exists(COLLECTION):
        qdrant.delete_collection(COLLECTION)
    wl.write_qdrant(qdrant, data, COLLECTION)
    return data


def _snapshot(clients: StackClients, data: wl.Workload) -> dict[str, Any]:
    tenants = list(data.tenants)
    values = {}
    for tenant in tenants:
        values |= {
            k: v for k, (v, _ttl) in wl.read_redis(clients.redis(), data.prefix, tenant).items()
        }
    with clients.postgresql() as conn:
        rows = wl.read_postgres(conn, tenants)
    return {
        "redis": values,
        "postgresql": rows,
        "qdrant": wl.read_qdrant(clients.qdrant(), COLLECTION, tenants),
    }


def _damage(
    clients: StackClients, data: wl.Workload, tenant: str, *, collection: bool = True
) -> None:
    """Delete ``tenant`` from every tier (from Qdrant's test collection when ``collection``)."""
    store = clients.redis()
    for key in store.scan_iter(match=wl.namespace_pattern(data.prefix, tenant)):
        store.delete(key)
    with clients.postgresql() as conn:
        conn.execute("DELETE FROM memory_items WHERE tenant_id = %s", [tenant])
    if not collection:
        return
    clients.qdrant().delete(
        COLLECTION,
        points_selector=models.FilterSelector(
            filter=models.Filter(
                must=[models.FieldCondition(key="tenant_id", match=models.MatchValue(value=tenant))]
            )
        ),
    )


def _backup(inventory: str) -> str:
    created = lab_invoke("backup.create", "--inventory", inventory, "--json")
    assert created.returncode == 0, created.stderr
    assert created.json()["verify"]["ok"] is True
    return str(created.json()["set_id"])


def test_a_backup_of_the_lab_restores_a_namespace_and_the_whole_stack_and_drills(
    lab_stack: LabStack,
) -> None:
    inventory = lab_stack.lab.inventory
    clients = StackClients(load_targets(lab_stack.lab.state_dir))
    data = _load(clients)
    before = _snapshot(clients, data)
    set_id = _backup(inventory)  # the whole Redis RDB comes over the network from its host

    victim = data.tenants[0]
    _damage(clients, data, victim)
    restored = lab_invoke(
        "backup.restore", set_id, "--namespace", victim, "--inventory", inventory, "--yes", "--json"
    )
    assert restored.returncode == 0, restored.stderr
    assert _snapshot(clients, data) == before

    for tenant in data.tenants:
        _damage(clients, data, tenant)
    whole = lab_invoke("backup.restore", set_id, "--inventory", inventory, "--yes", "--json")
    assert whole.returncode == 0, whole.stderr
    clients = StackClients(load_targets(lab_stack.lab.state_dir))
    assert _snapshot(clients, data) == before

    drill = lab_invoke("backup.drill", "--set-id", set_id, "--inventory", inventory, "--json")
    assert drill.returncode == 0, drill.stderr
    assert drill.json()["ok"] is True


def test_a_stopped_host_fires_its_alert_and_fails_only_its_tier(lab_stack: LabStack) -> None:
    lab = lab_stack.lab
    engine = find_engine(lab_cache())
    assert engine is not None
    redis_host = engine.client.containers.get(lab.host_of("redis"))
    with WebhookReceiver(lab.gateway, WEBHOOK_PORT) as webhook:
        stopped_at = time.monotonic()
        redis_host.stop(timeout=10)
        try:
            note = webhook.wait_for("RedisDown", "firing", timeout_s=120, since=stopped_at)
            assert note is not None, "RedisDown never reached the webhook"
            host_down = webhook.wait_for("MemopsHostDown", "firing", timeout_s=60, since=stopped_at)
            assert host_down is not None, "MemopsHostDown never reached the webhook"
            down = [
                a for a in host_down.body["alerts"] if a["labels"]["alertname"] == "MemopsHostDown"
            ]
            assert {a["labels"]["instance"] for a in down} == {f"{lab.host_of('redis')}:19100"}
            # Failing after three cycles in a row (the streak model), each one bounded.
            redis_host_name = lab.host_of("redis")
            for _cycle in range(3):
                started = time.monotonic()
                code, document = health(lab_stack)
                assert time.monotonic() - started < 60
            components = document["components"]
            states = {name: c["state"] for name, c in components.items()}
            assert code == 2, states
            on_the_host = {"redis", f"node_exporter@{redis_host_name}"}
            for name in on_the_host:
                assert states[name] == "failing", states
                assert "host_unreachable" in components[name]["reason_codes"], components[name]
            assert {state for name, state in states.items() if name not in on_the_host} == {
                "healthy"
            }
        finally:
            redis_host.start()
        deadline = time.monotonic() + 120
        code = -1
        while time.monotonic() < deadline:
            code, document = health(lab_stack)
            if code == 0:
                break
            time.sleep(3)
        assert code == 0, document  # systemd started Redis again with its host


def test_a_host_replaced_by_a_blank_one_comes_back_with_a_deploy_and_its_data_with_a_restore(
    lab_stack: LabStack,
) -> None:
    lab = lab_stack.lab
    inventory = lab.inventory
    clients = StackClients(load_targets(lab.state_dir))
    data = _load(clients)
    before = _snapshot(clients, data)
    set_id = _backup(inventory)
    engine = find_engine(lab_cache())
    assert engine is not None
    redis_host = lab.host_of("redis")
    engine.client.containers.get(redis_host).remove(force=True)  # the host is lost

    again = lab_invoke(*LAB_UP)  # a blank host in its place, with new SSH host keys
    assert again.returncode == 0, again.stderr
    assert again.json()["created"] == [redis_host]
    # Only the new host, as an operator would: the others are not touched.
    deployed = lab_invoke("deploy", "--inventory", inventory, "--limit", redis_host, "--json")
    assert deployed.returncode == 0, deployed.stderr
    assert deployed.json()["changed"] > 0
    assert set(deployed.json()["hosts"]) <= {redis_host, "localhost"}, deployed.json()["hosts"]
    code, document = health(lab_stack)
    assert code == 0, document

    restored = lab_invoke(
        "backup.restore", set_id, "--tier", "redis", "--inventory", inventory, "--yes", "--json"
    )
    assert restored.returncode == 0, restored.stderr
    clients = StackClients(load_targets(lab.state_dir))
    assert _snapshot(clients, data) == before


def test_remove_takes_the_stack_off_every_host_and_keeps_its_data(lab_stack: LabStack) -> None:
    lab = lab_stack.lab
    removed = lab_invoke("remove", "--inventory", lab.inventory, "--yes", "--json")
    assert removed.returncode == 0, removed.stderr
    units = "'memops-*' 'redis-memops*' 'qdrant-memops*' 'postgresql@15-memops*'"
    for host in lab.hosts:
        active = lab.ssh(host, f"systemctl list-units --state=active --no-legend {units}")
        assert active.stdout.strip() == "", (host, active.stdout)
        listening = lab.ssh(host, "ss -ltnH | awk '{print $4}'").stdout.split()
        assert [a for a in listening if not a.endswith(":22") and "127.0.0.11" not in a] == []
    assert lab.ssh(lab.host_of("redis"), "test -d /var/lib/redis/memops").returncode == 0
    assert (
        lab.ssh(lab.host_of("postgresql"), "test -d /var/lib/postgresql/15/memops").returncode == 0
    )
    code, _document = health(lab_stack)
    assert code == 2  # nothing deployed
    again = lab_invoke("remove", "--inventory", lab.inventory, "--yes", "--json")
    assert again.returncode == 0, again.stderr
    assert again.json()["changed"] == 0
