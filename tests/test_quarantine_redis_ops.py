"""rebuild.quarantine / rebuild.release on the Redis tier, against a real redis-server.

The server has the role's app user (``~{prefix}:*``); data comes from the workload
generator, hostile names included. What these tests prove: after a quarantine the
app user's connections (also one that authenticated before) get NOPERM on every
key of the namespace, read and write, while other namespaces (``acme:eu`` next to
``acme``) work; no key, value or TTL changes; release gives back exactly the ACL
of before; dry run, a missing --yes, an unknown or undeployed tier, a second
quarantine and a hand-edited ACL change nothing; every run writes an audit line.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from op_calls import call, scratch_inventory

from memops.backup.redis.scratch import ScratchRedis
from memops.clients import redis_client
from memops.deploy.targets import RedisTarget
from memops.exitcodes import EXIT_BAD_INPUT, EXIT_OK
from memops.ops.quarantine import QUARANTINE, RELEASE
from memops.quarantine.state import QUARANTINE_FILE
from memops.testing import workload as wl

pytestmark = pytest.mark.integration

PORT = 31703
APP_USER = "memory-service"
APP_PASSWORD = "app-password-0123456789"
TENANTS = ("acme", "acme:eu", "[brackets]", "o'brien", "with space", wl.NASTY_TENANTS[7])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ScratchRedis]:
    prefix = wl.DEFAULT_PREFIX
    app = f"user {APP_USER} on >{APP_PASSWORD} ~{prefix}:* &{prefix}:* +@all -@dangerous +info"
    scratch = ScratchRedis(
        PORT, tmp_path_factory.mktemp("q"), password="admin-0123456789", config=[app]
    )
    scratch.start()
    yield scratch
    scratch.stop()


@pytest.fixture
def load(server: ScratchRedis) -> wl.Workload:
    workload = wl.generate(seed=4242, tenants=TENANTS)
    admin = redis_client(server.target)
    admin.execute_command("ACL", "SETUSER", APP_USER, "resetkeys", f"~{workload.prefix}:*")
    admin.flushall()
    wl.write_redis(admin, workload)
    admin.close()
    return workload


@pytest.fixture
def inventory(tmp_path: Path, server: ScratchRedis, monkeypatch: pytest.MonkeyPatch) -> Path:
    component = {"kind": "redis", "host": "127.0.0.1", "port": PORT, "password": server.password}
    deployment = {"redis": {"key_prefix": wl.DEFAULT_PREFIX, "app_user": APP_USER}}
    return scratch_inventory(tmp_path, monkeypatch, {"redis": component}, deployment)


@pytest.fixture
def app(server: ScratchRedis) -> Iterator[redis.Redis]:
    target = RedisTarget(
        name="app", host="127.0.0.1", port=PORT, username=APP_USER, password=APP_PASSWORD
    )
    client = redis_client(target, single_connection=True)
    client.ping()  # authenticated before any quarantine
    yield client
    client.close()


@pytest.fixture
def admin(server: ScratchRedis) -> Iterator[redis.Redis]:
    client = redis_client(server.target)
    yield client
    client.close()


def run(
    op: Any, inventory: Path, capsys: pytest.CaptureFixture[str], tenant: str, **raw: Any
) -> tuple[int, dict[str, Any], str]:
    raw = {"namespace": tenant, "tier": "redis", "dry_run": False, "yes": True} | raw
    return call(op, inventory, capsys, **raw)


def snapshot(admin: redis.Redis) -> dict[bytes, tuple[bytes, bool]]:
    """Every key's dump and whether it still has a TTL."""
    return {key: (admin.dump(key), admin.pttl(key) > 0) for key in admin.scan_iter(count=1000)}


def reachable(app: redis.Redis, load: wl.Workload, tenant: str) -> tuple[int, int]:
    """(readable, writable) keys of the tenant for the app user.

    A key counts as writable when the app may SET it: a fresh key of the namespace
    is written (and deleted) instead of the generator's, which stay as they are.
    """
    readable = writable = 0
    for entry in load.redis:
        if entry.tenant != tenant:
            continue
        try:
            app.get(entry.key)
            readable += 1
        except redis.exceptions.NoPermissionError:
            pass
        fresh = wl.redis_key(load.prefix, tenant, entry.type, "w" + entry.id)
        try:
            app.set(fresh, b"written by the test")
            app.delete(fresh)
            writable += 1
        except redis.exceptions.NoPermissionError:
            pass
    return readable, writable


def test_quarantine_blocks_the_namespace_and_release_restores_exactly(
    inventory: Path,
    load: wl.Workload,
    app: redis.Redis,
    admin: redis.Redis,
    capsys: pytest.CaptureFixture[str],
) -> None:
    acl_before = admin.execute_command("ACL", "GETUSER", APP_USER)
    count = {t: sum(1 for e in load.redis if e.tenant == t) for t in TENANTS}

    code, document, err = run(QUARANTINE, inventory, capsys, "acme")
    assert code == EXIT_OK, err
    assert document["changes"]["redis"]["patterns_after"] > 1
    keys_after = snapshot(admin)

    assert reachable(app, load, "acme") == (0, 0)  # the connection from before is cut off too
    for other in TENANTS[1:]:
        assert reachable(app, load, other) == (count[other], count[other])
    with pytest.raises(redis.exceptions.NoPermissionError):
        app.set(wl.redis_key(load.prefix, "acme", "chat", "new"), b"x")
    record = json.loads((inventory.parent / "state" / QUARANTINE_FILE).read_text())
    assert record["namespaces"]["acme"]["tiers"] == ["redis"]

    code, document, err = run(RELEASE, inventory, capsys, "acme")
    assert code == EXIT_OK, err
    assert admin.execute_command("ACL", "GETUSER", APP_USER) == acl_before
    assert reachable(app, load, "acme") == (count["acme"], count["acme"])
    assert json.loads((inventory.parent / "state" / QUARANTINE_FILE).read_text()) == {
        "namespaces": {}
    }
    assert set(keys_after) == set(snapshot(admin))  # nothing was deleted or expired


def test_quarantine_touches_no_key(
    inventory: Path, load: wl.Workload, admin: redis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    before = snapshot(admin)
    code, _, err = run(QUARANTINE, inventory, capsys, "acme:eu")
    assert code == EXIT_OK, err
    assert snapshot(admin) == before
    run(RELEASE, inventory, capsys, "acme:eu")


def test_hostile_names_and_several_namespaces(
    inventory: Path, load: wl.Workload, app: redis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    hostile = TENANTS[2:]
    for tenant in hostile:
        code, _, err = run(QUARANTINE, inventory, capsys, tenant)
        assert code == EXIT_OK, (tenant, err)
    for tenant in hostile:
        assert reachable(app, load, tenant) == (0, 0), tenant
    for tenant in ("acme", "acme:eu"):
        n = sum(1 for e in load.redis if e.tenant == tenant)
        assert reachable(app, load, tenant) == (n, n)
    code, _, err = run(RELEASE, inventory, capsys, hostile[0])
    assert code == EXIT_OK, err
    n = sum(1 for e in load.redis if e.tenant == hostile[0])
    assert reachable(app, load, hostile[0]) == (n, n)
    assert reachable(app, load, hostile[1]) == (0, 0)  # still quarantined
    for tenant in hostile[1:]:
        assert run(RELEASE, inventory, capsys, tenant)[0] == EXIT_OK


def test_refusals_change_nothing(
    inventory: Path, load: wl.Workload, admin: redis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    acl = admin.execute_command("ACL", "GETUSER", APP_USER)
    state = inventory.parent / "state" / QUARANTINE_FILE

    code, document, _ = run(QUARANTINE, inventory, capsys, "acme", dry_run=True)
    assert code == EXIT_OK and document["dry_run"] is True
    code, _, err = run(QUARANTINE, inventory, capsys, "acme", yes=False)  # pytest has no terminal
    assert code == EXIT_BAD_INPUT and "--yes" in err
    code, _, err = run(QUARANTINE, inventory, capsys, "acme", tier="qdrant")
    assert code == EXIT_BAD_INPUT and "no qdrant is deployed" in err
    code, _, err = run(QUARANTINE, inventory, capsys, "acme", tier="bogus")
    assert code == EXIT_BAD_INPUT and "unknown 'bogus'" in err
    code, _, err = run(RELEASE, inventory, capsys, "acme")
    assert code == EXIT_BAD_INPUT and "not quarantined" in err
    assert admin.execute_command("ACL", "GETUSER", APP_USER) == acl
    assert not state.exists()

    assert run(QUARANTINE, inventory, capsys, "acme")[0] == EXIT_OK
    code, _, err = run(QUARANTINE, inventory, capsys, "acme")
    assert code == EXIT_BAD_INPUT and "already quarantined" in err
    admin.execute_command("ACL", "SETUSER", APP_USER, "resetkeys", "~*")  # edited by hand
    code, _, err = run(RELEASE, inventory, capsys, "acme")
    assert code == EXIT_BAD_INPUT and "changed by hand" in err
    assert json.loads(state.read_text())["namespaces"]["acme"]["tiers"] == ["redis"]

    audit = [
        json.loads(line)
        for line in (inventory.parent / "state" / "audit.jsonl").read_text().splitlines()
        if json.loads(line)["result"] != "started"
    ]
    assert [a["action"] for a in audit][-3:] == ["rebuild.quarantine"] * 2 + ["rebuild.release"]
