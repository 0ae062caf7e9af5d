"""A scratch stack of all three tiers, filled with the workload, behind an inventory.

Redis (a scratch redis-server with a password), PostgreSQL (a scratch cluster,
a fresh migrated database per test) and the Qdrant stand-in, recorded in the
state directory of a throwaway inventory the way a deploy records them, with
the workload's key ring. Test modules import the fixtures they use.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis
from op_calls import call
from qdrant_client import QdrantClient

from memops.backup.redis.scratch import ScratchRedis
from memops.backup.scratch import free_port
from memops.deploy.targets_file import merge_targets
from memops.keys.ring import KeyRing, new_keyring, save_keyring
from memops.ops.rebuild import VALIDATE
from memops.testing import workload as wl
from memops.testing.pgcluster import ClusterUnavailable, ScratchCluster, scratch_cluster

PASSWORD = "validate-secret"
COLLECTIONS = tuple(f"memory_{kind}" for kind in wl.SOURCE_KINDS)


@pytest.fixture(scope="module")
def tiers_cluster() -> Iterator[ScratchCluster]:
    try:
        with scratch_cluster("memops_rebuildtest", 31512, app_role="rbtest", db_prefix="rb") as c:
            yield c
    except ClusterUnavailable as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def tiers_redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ScratchRedis]:
    server = ScratchRedis(free_port(), tmp_path_factory.mktemp("redis"), password=PASSWORD)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def tiers_ring() -> KeyRing:
    return new_keyring(bytes(range(32)))


@pytest.fixture(scope="module")
def tiers_load(tiers_ring: KeyRing) -> wl.Workload:
    return wl.generate(seed=8080, tenants=2, items_per_tenant=10, keyring=tiers_ring)


@dataclass
class Stack:
    inventory: Path
    state: Path
    redis: redis.Redis
    pg: psycopg.Connection[Any]
    qdrant: QdrantClient
    load: wl.Workload
    capsys: pytest.CaptureFixture[str]

    def call(self, **raw: Any) -> tuple[int, dict[str, Any], str]:
        given = {"tier": None, "benchmark": False, "min_hit_rate": None} | raw
        return call(VALIDATE, self.inventory, self.capsys, **given)


@pytest.fixture
def tier_stack(
    tmp_path: Path,
    tiers_cluster: ScratchCluster,
    tiers_redis_server: ScratchRedis,
    client: QdrantClient,
    standin: Any,
    tiers_ring: KeyRing,
    tiers_load: wl.Workload,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> Iterator[Stack]:
    dbname = tiers_cluster.new_database()
    with tiers_cluster.connect(dbname, autocommit=True) as conn:
        tiers_cluster.migrate(conn)
        wl.write_postgres(conn, tiers_load)
    store = redis.Redis(port=tiers_redis_server.port, password=PASSWORD)
    store.flushall()
    wl.write_redis(store, tiers_load)
    for name in COLLECTIONS:
        wl.write_qdrant(client, tiers_load, name, kind=name.removeprefix("memory_"))
    root = tmp_path / "inv"
    (root / "group_vars").mkdir(parents=True)
    (root / "hosts.yml").write_text("all:\n  hosts:\n    localhost:\n")
    (root / "group_vars" / "all.yml").write_text("{}\n")
    state = tmp_path / "state"
    monkeypatch.setenv("MEMOPS_STATE_DIR", str(state))
    components = {
        "redis": {"kind": "redis", "host": "127.0.0.1", "port": tiers_redis_server.port},
        "postgresql": {"kind": "postgresql", **tiers_cluster.ops_params(dbname)},
        "qdrant": {"kind": "qdrant", "url": standin.url, "api_key": standin.api_key},
    }
    components["redis"]["password"] = PASSWORD
    deployment = {
        "redis": {"key_prefix": tiers_load.prefix},
        "postgresql": {"app_user": tiers_cluster.app_role},
    }
    merge_targets(state, "inv", components, deployment)
    save_keyring(state / "keyring.json", tiers_ring)
    with tiers_cluster.connect(dbname, autocommit=True) as conn:
        yield Stack(root, state, store, conn, client, tiers_load, capsys)
    store.close()
