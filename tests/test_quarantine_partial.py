"""A quarantine or a release that stops part way is on record tier by tier; a re-run ends it.

Against the real services of tests/three_tiers.py: a scratch redis-server with the
role's app user (append-only file, so a restart keeps its data), a scratch
PostgreSQL cluster and the Qdrant stand-in. A tier's service goes away after the
run has planned (its checks passed) and before it changes anything, or half way
through the moves of the Qdrant tier. What these tests prove: the run changes the
tiers it can and exits 1 naming the tiers done and those still open (error line,
--json and audit line); quarantine.json lists only the tiers done, the open ones
under ``unfinished``; `invoke health` is degraded with ``quarantine_partial``
(``release_partial``) on the open tiers' components and does not list the open
tiers as quarantined; with the service back, the same command does the open tiers
only and the application's access is what an uninterrupted run gives. The other
tenant is byte for byte what it was in every tier, and a release gives back
exactly the data of before.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import redis
from op_calls import call
from standin_server import RunningStandin, start_again, stop
from three_tiers import COLLECTIONS, PASSWORD, Stack

from memops.backup.qdrant.tier import QdrantTier, point_digest
from memops.backup.redis.scratch import ScratchRedis
from memops.backup.scratch import free_port
from memops.clients import redis_client
from memops.deploy.targets import RedisTarget
from memops.deploy.targets_file import merge_targets
from memops.exitcodes import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK
from memops.memory.qdrant_points import tenant_selector
from memops.model import NAMESPACE_FIELD
from memops.ops.health import HEALTH
from memops.ops.quarantine import QUARANTINE, RELEASE
from memops.probes.result import QUARANTINE_PARTIAL, RELEASE_PARTIAL
from memops.quarantine import procedure
from memops.quarantine import qdrant as qdrant_quarantine
from memops.quarantine import state as quarantine_state
from memops.quarantine.qdrant import QUARANTINE_PREFIX
from memops.testing import workload as wl
from memops.testing.pgcluster import ScratchCluster

pytestmark = pytest.mark.integration

APP_USER = "memory-service"
APP_PASSWORD = "app-password-0123456789"
ALL_TIERS = ["postgresql", "qdrant", "redis"]  # as the record sorts them


@pytest.fixture(scope="module")
def tiers_redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ScratchRedis]:
    """three_tiers' server, with the app user the role makes and an append-only file."""
    prefix = wl.DEFAULT_PREFIX
    app = f"user {APP_USER} on >{APP_PASSWORD} ~{prefix}:* &{prefix}:* +@all -@dangerous +info"
    server = ScratchRedis(
        free_port(),
        tmp_path_factory.mktemp("redis"),
        password=PASSWORD,
        config=[app, "appendonly yes", "appendfsync always"],
    )
    server.start()
    yield server
    server.stop()


@pytest.fixture
def stack(
    tier_stack: Stack, tiers_redis_server: ScratchRedis, standin: RunningStandin
) -> Iterator[Stack]:
    """tier_stack, its deploy record naming the Redis app user as the role does.

    The app user starts with the role's key pattern, and a service a test stopped runs
    again afterwards, also when the test failed.
    """
    prefix = tier_stack.load.prefix
    tier_stack.redis.execute_command("ACL", "SETUSER", APP_USER, "resetkeys", f"~{prefix}:*")
    redis_deployment = {"key_prefix": prefix, "app_user": APP_USER}
    merge_targets(tier_stack.state, "inv", {}, {"redis": redis_deployment})
    yield tier_stack
    if tiers_redis_server.process is None:
        tiers_redis_server.start()
    if standin.process.poll() is not None:
        start_again(standin)


@pytest.fixture
def app(tiers_redis_server: ScratchRedis) -> Iterator[redis.Redis]:
    target = RedisTarget(
        name="app",
        host="127.0.0.1",
        port=tiers_redis_server.port,
        username=APP_USER,
        password=APP_PASSWORD,
    )
    client = redis_client(target)
    yield client
    client.close()


def health(stack: Stack) -> tuple[int, dict[str, Any]]:
    code, document, _ = call(HEALTH, stack.inventory, stack.capsys, timeout=5.0, retries=0)
    return code, document


@contextlib.contextmanager
def failing_after_plan(monkeypatch: pytest.MonkeyPatch, fail: Callable[[], None]) -> Iterator[None]:
    """Call ``fail`` once the run has planned (every check passed), before it changes a tier."""
    real = procedure.plan

    def plan_then_fail(*args: Any, **kwargs: Any) -> procedure.Plan:
        planned = real(*args, **kwargs)
        fail()
        return planned

    with monkeypatch.context() as patched:
        patched.setattr(procedure, "plan", plan_then_fail)
        yield


def last_audit(stack: Stack) -> dict[str, Any]:
    return json.loads((stack.state / "audit.jsonl").read_text().splitlines()[-1])


def redis_keys(store: redis.Redis, prefix: str, tenant: str) -> dict[bytes, tuple[Any, Any]]:
    """The tenant's keys: DUMP and absolute expiry (ms) of each."""
    found = {}
    for key in store.scan_iter(match=wl.namespace_pattern(prefix, tenant), count=1000):
        if wl.key_in_namespace(key.decode(), prefix, tenant):
            found[key] = (store.dump(key), store.execute_command("PEXPIRETIME", key))
    return found


def pg_rows(cluster: ScratchCluster, dbname: str, tenant: str) -> list[str]:
    """The tenant's memory_items rows, whole, as the superuser reads them."""
    with cluster.admin(dbname) as conn:
        query = "SELECT t::text FROM memory_items t WHERE tenant_id = %s ORDER BY id"
        return [row[0] for row in conn.execute(query, [tenant])]


def points(standin: RunningStandin, tenant: str) -> dict[str, list[str]]:
    """Collection -> digests of the tenant's points there (quarantine collections too)."""
    found: dict[str, list[str]] = {}
    with QdrantTier(standin.target) as tier:
        for collection in tier.collections():
            digests = sorted(
                point_digest(p)
                for p in tier.scroll(collection)
                if p["payload"].get(NAMESPACE_FIELD) == tenant
            )
            if digests:
                found[collection] = digests
    return found


NOWHERE = {"redis": False, "postgresql": False, "qdrant": False}
EVERYWHERE = {"redis": True, "postgresql": True, "qdrant": True}


@dataclass
class Scene:
    """The stack with two tenants: ``tenant`` gets quarantined, ``other`` never does."""

    stack: Stack
    cluster: ScratchCluster
    standin: RunningStandin
    app: redis.Redis
    tenant: str
    other: str
    before: dict[str, dict[str, Any]]

    def everything(self, tenant: str) -> dict[str, Any]:
        """The tenant in every tier, byte for byte."""
        stack = self.stack
        return {
            "redis": redis_keys(stack.redis, stack.load.prefix, tenant),
            "postgresql": pg_rows(self.cluster, stack.pg.info.dbname, tenant),
            "qdrant": points(self.standin, tenant),
        }

    def unchanged(self) -> bool:
        """Both tenants are what they were before the test, in every tier."""
        return all(self.everything(t) == self.before[t] for t in (self.tenant, self.other))

    def app_reaches(self, tenant: str) -> dict[str, bool]:
        """Per tier, whether the application reaches the tenant's data."""
        key = next(e.key for e in self.stack.load.redis if e.tenant == tenant)
        try:
            self.app.get(key)
            in_redis = True
        except redis.exceptions.NoPermissionError:
            in_redis = False
        query = "SELECT count(*) FROM memory_items WHERE tenant_id = %s"
        rows = self.stack.pg.execute(query, [tenant]).fetchone()[0]
        selector = tenant_selector(tenant)
        shared = sum(self.stack.qdrant.count(c, count_filter=selector).count for c in COLLECTIONS)
        return {"redis": in_redis, "postgresql": rows > 0, "qdrant": shared > 0}

    def run(self, op: Any) -> tuple[int, dict[str, Any], str]:
        """The operation on ``tenant``, every tier, confirmed, with --json."""
        raw = {"namespace": self.tenant, "tier": None, "dry_run": False, "yes": True}
        return call(op, self.stack.inventory, self.stack.capsys, **raw)

    def entry(self) -> dict[str, Any]:
        return quarantine_state.load(self.stack.state)[self.tenant]


@pytest.fixture
def scene(
    stack: Stack, tiers_cluster: ScratchCluster, standin: RunningStandin, app: redis.Redis
) -> Scene:
    tenant, other = stack.load.tenants[:2]
    found = Scene(stack, tiers_cluster, standin, app, tenant, other, {})
    found.before = {t: found.everything(t) for t in (tenant, other)}
    assert all(found.before[tenant].values()) and all(found.before[other].values())
    return found


def partial_codes(document: dict[str, Any]) -> dict[str, list[str]]:
    """Component -> the reason codes of unfinished quarantines and releases it carries."""
    found = {}
    for name, component in document["components"].items():
        codes = [c for c in component["reason_codes"] if c in (QUARANTINE_PARTIAL, RELEASE_PARTIAL)]
        if codes:
            found[name] = codes
    return found


def test_a_quarantine_that_stops_part_way_is_finished_by_running_it_again(
    scene: Scene, tiers_redis_server: ScratchRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack, tenant = scene.stack, scene.tenant
    code, seen = health(stack)
    assert partial_codes(seen) == {} and "quarantine_unfinished" not in seen

    with failing_after_plan(monkeypatch, tiers_redis_server.stop):
        code, document, err = scene.run(QUARANTINE)
    assert code == EXIT_FAILED, err
    entry = scene.entry()
    assert entry["tiers"] == ["postgresql", "qdrant"]  # redis is not: it was not done
    assert list(entry["unfinished"]) == ["redis"]
    assert entry["unfinished"]["redis"]["action"] == "quarantine"
    assert "stopped part way: done in postgresql, qdrant; still open: redis" in err
    assert "--tier redis" in err
    assert (document["done"], document["open"]) == (["postgresql", "qdrant"], ["redis"])
    assert "redis" in document["failed"]
    audit = last_audit(stack)
    assert (audit["action"], audit["result"]) == ("rebuild.quarantine", "partial")
    assert audit["details"]["done"] == ["postgresql", "qdrant"]
    assert audit["details"]["open"] == ["redis"]

    tiers_redis_server.start()  # the service is back; the quarantine is still half done
    assert scene.app_reaches(tenant) == {"redis": True, "postgresql": False, "qdrant": False}
    code, seen = health(stack)
    assert code == EXIT_FAILED and seen["state"] == "degraded"
    assert partial_codes(seen) == {"redis": [QUARANTINE_PARTIAL]}
    assert seen["components"]["redis"]["details"][QUARANTINE_PARTIAL] == [tenant]
    assert seen["quarantined"] == {tenant: ["postgresql", "qdrant"]}
    assert list(seen["quarantine_unfinished"][tenant]["open"]) == ["redis"]

    code, document, err = scene.run(QUARANTINE)  # the same command again
    assert code == EXIT_OK, err
    assert document["tiers"] == ["redis"] and document["done"] == ["redis"]
    assert scene.app_reaches(tenant) == NOWHERE
    assert scene.app_reaches(scene.other) == EVERYWHERE
    entry = scene.entry()
    assert entry["tiers"] == ALL_TIERS and "unfinished" not in entry
    code, seen = health(stack)
    assert partial_codes(seen) == {} and "quarantine_unfinished" not in seen
    assert seen["quarantined"] == {tenant: ALL_TIERS}
    code, _, err = scene.run(QUARANTINE)
    assert code == EXIT_BAD_INPUT and "already quarantined" in err

    assert scene.everything(scene.other) == scene.before[scene.other]
    assert scene.run(RELEASE)[0] == EXIT_OK
    assert scene.app_reaches(tenant) == EVERYWHERE
    assert scene.unchanged()
    assert quarantine_state.load(stack.state) == {}


def test_a_release_that_stops_part_way_says_what_is_still_quarantined_and_finishes(
    scene: Scene, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack, tenant = scene.stack, scene.tenant
    code, _, err = scene.run(QUARANTINE)
    assert code == EXIT_OK, err

    with failing_after_plan(monkeypatch, lambda: stop(scene.standin)):
        code, document, err = scene.run(RELEASE)
    assert code == EXIT_FAILED, err
    entry = scene.entry()
    assert entry["tiers"] == ["qdrant"]  # still quarantined there
    assert entry["unfinished"]["qdrant"]["action"] == "release"
    assert entry["unfinished"]["qdrant"]["error"]
    assert "stopped part way: done in redis, postgresql; still open: qdrant" in err
    assert (document["done"], document["open"]) == (["redis", "postgresql"], ["qdrant"])
    audit = last_audit(stack)
    assert (audit["action"], audit["result"]) == ("rebuild.release", "partial")
    assert audit["details"]["open"] == ["qdrant"]

    start_again(scene.standin)
    assert scene.app_reaches(tenant) == {"redis": True, "postgresql": True, "qdrant": False}
    code, seen = health(stack)
    assert code == EXIT_FAILED and seen["state"] == "degraded"
    assert partial_codes(seen) == {"qdrant": [RELEASE_PARTIAL]}
    assert seen["quarantined"] == {tenant: ["qdrant"]}

    code, document, err = scene.run(RELEASE)
    assert code == EXIT_OK, err
    assert document["tiers"] == ["qdrant"] and document["done"] == ["qdrant"]
    assert "arrived_during_quarantine" not in document["changes"]["qdrant"]
    assert quarantine_state.load(stack.state) == {}
    code, seen = health(stack)
    assert partial_codes(seen) == {} and "quarantined" not in seen
    assert "quarantine_unfinished" not in seen
    assert scene.app_reaches(tenant) == EVERYWHERE
    assert scene.unchanged()


@contextlib.contextmanager
def qdrant_gone_after_one_move(
    monkeypatch: pytest.MonkeyPatch, standin: RunningStandin
) -> Iterator[None]:
    """The stand-in stops once the Qdrant tier has moved the points of one collection."""
    real = qdrant_quarantine._move

    def move_then_stop(*args: Any, **kwargs: Any) -> int:
        moved = real(*args, **kwargs)
        stop(standin)
        return moved

    with monkeypatch.context() as patched:
        patched.setattr(qdrant_quarantine, "_move", move_then_stop)
        yield


def test_qdrant_moves_cut_off_half_way_are_finished_without_false_alarms(
    scene: Scene, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Half of the tenant's collections moved: health does not take the points still in the
    shared collections for points written during the quarantine, and the release that
    finishes a half release does not report the points it moved back before as new."""
    tenant, standin = scene.tenant, scene.standin
    assert len(scene.before[tenant]["qdrant"]) > 1

    with qdrant_gone_after_one_move(monkeypatch, standin):
        code, document, err = scene.run(QUARANTINE)
    assert code == EXIT_FAILED, err
    assert document["open"] == ["qdrant"]
    start_again(standin)
    moved = [c for c in points(standin, tenant) if c.startswith(QUARANTINE_PREFIX)]
    assert len(moved) == 1 and scene.app_reaches(tenant)["qdrant"]
    code, seen = health(scene.stack)
    assert partial_codes(seen) == {"qdrant": [QUARANTINE_PARTIAL]}
    assert "written_during_quarantine" not in seen
    code, document, err = scene.run(QUARANTINE)
    assert code == EXIT_OK, err
    assert document["done"] == ["qdrant"]
    assert scene.app_reaches(tenant) == NOWHERE

    with qdrant_gone_after_one_move(monkeypatch, standin):
        code, document, err = scene.run(RELEASE)
    assert code == EXIT_FAILED, err
    assert document["open"] == ["qdrant"]
    start_again(standin)
    assert scene.entry()["tiers"] == ["qdrant"]
    code, document, err = scene.run(RELEASE)
    assert code == EXIT_OK, err
    assert "arrived_during_quarantine" not in document["changes"]["qdrant"]
    assert quarantine_state.load(scene.stack.state) == {}
    assert scene.unchanged()


def test_a_half_done_quarantine_can_be_released_instead_of_finished(
    scene: Scene, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The release also takes the tier left open, and the points the stopped quarantine had
    not moved yet are not reported as written during the quarantine."""
    with qdrant_gone_after_one_move(monkeypatch, scene.standin):
        code, _, err = scene.run(QUARANTINE)
    assert code == EXIT_FAILED, err
    start_again(scene.standin)

    code, document, err = scene.run(RELEASE)
    assert code == EXIT_OK, err
    assert document["tiers"] == ["redis", "postgresql", "qdrant"]
    assert "arrived_during_quarantine" not in document["changes"]["qdrant"]
    assert quarantine_state.load(scene.stack.state) == {}
    assert scene.app_reaches(scene.tenant) == EVERYWHERE
    assert scene.unchanged()
