"""Quarantine on the deployed test stack: through the real playbooks, across a re-deploy.

What these tests prove: `invoke rebuild.quarantine acme --tier redis` cuts the app
user's own login (memory-service, from the role) off acme's keys, read and write,
while acme:eu stays reachable; the Redis secrets file holds the quarantine
(playbooks/quarantine.yml), so a re-deploy and a restart of Redis (stop, then the
deploy starts it from its files) keep it; acme's Qdrant points leave the memory
collection and come back exactly, and the app's own Qdrant token (the role's
secrets/qdrant_app_token, scoped to the memory collection) finds none of them and
gets 403 on the quarantine collection; `invoke health` lists the namespace as a
note, not a failure; release gives back the exact secrets file and access.
"""

from __future__ import annotations

import contextlib
import dataclasses
from pathlib import Path
from typing import Any

import pytest
import redis
from integration_helpers import (
    REDIS_PIDFILE,
    TEST_INVENTORY,
    DeployedStack,
    invoke,
    pidfile_daemon,
    secret,
)
from qdrant_client import QdrantClient
from qdrant_client.http.exceptions import UnexpectedResponse

from memops.clients import redis_client
from memops.deploy.targets import QdrantTarget, RedisTarget
from memops.quarantine.qdrant import quarantine_collection
from memops.testing import workload as wl

pytestmark = pytest.mark.integration

SECRETS_FILE = Path("/etc/redis/memops-test.secrets.conf")
APP_USER = "memory-service"
TENANTS = ("acme", "acme:eu")
COLLECTION = "quarantine_test"


def _app(stack: DeployedStack) -> redis.Redis:
    target = stack.targets.components["redis"]
    assert isinstance(target, RedisTarget)
    password = secret(stack.state_dir, "redis_app_password")
    app_target = dataclasses.replace(target, username=APP_USER, password=password)
    return redis_client(app_target, timeout_s=5)


def _app_points(stack: DeployedStack) -> tuple[dict[str, int], dict[str, int]]:
    """Points per tenant the app's token finds, and its statuses on the other collections."""
    token = secret(stack.state_dir, "qdrant_app_token")
    assert token.count(".") == 2  # a JWT, not the API key
    found: dict[str, int] = {}
    statuses: dict[str, int] = {}
    everything = [c.name for c in stack.clients.qdrant().get_collections().collections]
    with contextlib.closing(
        QdrantClient(url=stack.clients.target(QdrantTarget).url, api_key=token, timeout=10)
    ) as app:
        visible = [c.name for c in app.get_collections().collections]
        assert visible == [COLLECTION]
        for collection in everything:
            try:
                records, _ = app.scroll(collection, limit=1000)
            except UnexpectedResponse as exc:
                statuses[collection] = exc.status_code
                continue
            for record in records:
                tenant = record.payload["tenant_id"]
                found[tenant] = found.get(tenant, 0) + 1
    return found, statuses


def _access(app: redis.Redis, load: wl.Workload, tenant: str) -> tuple[int, int]:
    """(keys the app may read, keys of the namespace it may write) of the tenant."""
    readable = writable = 0
    for entry in (e for e in load.redis if e.tenant == tenant):
        try:
            assert app.get(entry.key) == entry.value.encode()
            readable += 1
        except redis.exceptions.NoPermissionError:
            pass
        fresh = wl.redis_key(load.prefix, tenant, entry.type, "w" + entry.id)
        try:
            app.set(fresh, b"x")
            app.delete(fresh)
            writable += 1
        except redis.exceptions.NoPermissionError:
            pass
    return readable, writable


def _points(qdrant: Any) -> dict[str, int]:
    """Points per tenant in the memory collection."""
    found: dict[str, int] = {}
    records, offset = qdrant.scroll(COLLECTION, limit=1000)
    assert offset is None
    for record in records:
        tenant = record.payload["tenant_id"]
        found[tenant] = found.get(tenant, 0) + 1
    return found


def _quarantine(*args: str) -> None:
    tiers = "redis,postgresql,qdrant"
    run = invoke(*args, "--tier", tiers, "--yes", "--inventory", TEST_INVENTORY, "--json")
    assert run.returncode == 0, f"{run.stderr.strip()}\n{run.stdout[-2000:]}"


def test_quarantine_survives_redeploy_and_restart(deployed_stack: DeployedStack) -> None:
    load = wl.generate(seed=6060, tenants=TENANTS)
    admin = deployed_stack.clients.redis()
    for tenant in TENANTS:
        for key in admin.scan_iter(match=wl.namespace_pattern(load.prefix, tenant)):
            admin.delete(key)
    wl.write_redis(admin, load)
    counts = {t: sum(1 for e in load.redis if e.tenant == t) for t in TENANTS}
    qdrant = deployed_stack.clients.qdrant()
    if qdrant.collection_exists(COLLECTION):
        qdrant.delete_collection(COLLECTION)
    wl.write_qdrant(qdrant, load, COLLECTION)
    points = {t: sum(p.payload["tenant_id"] == t for p in load.qdrant) for t in TENANTS}
    secrets_before = SECRETS_FILE.read_bytes()
    app = _app(deployed_stack)
    assert _access(app, load, "acme") == (counts["acme"], counts["acme"])

    _quarantine("rebuild.quarantine", "acme")
    assert _access(app, load, "acme") == (0, 0)
    assert _access(app, load, "acme:eu") == (counts["acme:eu"], counts["acme:eu"])
    assert _points(qdrant) == {"acme:eu": points["acme:eu"]}
    found, denied = _app_points(deployed_stack)
    assert found == {"acme:eu": points["acme:eu"]}
    assert denied[quarantine_collection(COLLECTION, "acme")] == 403
    assert set(denied.values()) == {403}
    persisted = SECRETS_FILE.read_bytes()
    assert persisted != secrets_before

    health = invoke("health", "--inventory", TEST_INVENTORY, "--json")
    assert health.returncode == 0, health.stderr
    assert health.json()["quarantined"] == {"acme": ["postgresql", "qdrant", "redis"]}

    redeploy = invoke("deploy", "--inventory", TEST_INVENTORY, "--tags", "redis", "--json")
    assert redeploy.returncode == 0, redeploy.stderr
    assert SECRETS_FILE.read_bytes() == persisted  # the role rendered the same quarantine
    assert _access(app, load, "acme") == (0, 0)

    pidfile_daemon("stop", REDIS_PIDFILE)  # a restart: the server reads its files again
    restarted = invoke("deploy", "--inventory", TEST_INVENTORY, "--tags", "redis", "--json")
    assert restarted.returncode == 0, restarted.stderr
    app = _app(deployed_stack)
    assert _access(app, load, "acme") == (0, 0)
    assert _access(app, load, "acme:eu") == (counts["acme:eu"], counts["acme:eu"])
    assert wl.verify_redis(deployed_stack.clients.redis(), load) == []  # nothing lost
    assert _points(qdrant) == {"acme:eu": points["acme:eu"]}

    _quarantine("rebuild.release", "acme")
    assert SECRETS_FILE.read_bytes() == secrets_before
    assert _access(app, load, "acme") == (counts["acme"], counts["acme"])
    assert _points(qdrant) == points
    assert wl.verify_qdrant(qdrant, load, COLLECTION) == []
    found, denied = _app_points(deployed_stack)
    assert found == points
    assert quarantine_collection(COLLECTION, "acme") not in denied
    health = invoke("health", "--inventory", TEST_INVENTORY, "--json")
    assert "quarantined" not in health.json()
