"""The rebuild and recall tasks against the stack the playbooks deployed.

Same commands a responder types, through `invoke`, on the targets a real deploy
recorded (the Redis key prefix, the admin credentials): a namespace validates,
a soft rebuild run on the backup host (MEMOPS_BACKUP_HOST=localhost, through
playbooks/rebuild.yml) removes exactly its corrupt entries, and the recall
scenario passes.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from integration_helpers import TEST_INVENTORY, DeployedStack, invoke
from qdrant_client import models

from memops.keys.ring import new_keyring, save_keyring
from memops.testing import workload as wl

pytestmark = pytest.mark.integration

TENANTS = ["rebuild*[it]", "rebuild:it"]
COLLECTION = "memory_rebuild_it"


def run(task: str, *args: str, env: dict[str, str] | None = None) -> Any:
    return invoke(task, *args, "--inventory", TEST_INVENTORY, "--json", env=env)


@pytest.fixture
def loaded(deployed_stack: DeployedStack) -> Iterator[wl.Workload]:
    ring_path = deployed_stack.state_dir / "keyring.json"
    ring = new_keyring()
    save_keyring(ring_path, ring)
    prefix = deployed_stack.targets.deployment["redis"]["key_prefix"]
    data = wl.generate(seed=3939, tenants=TENANTS, prefix=prefix, items_per_tenant=8, keyring=ring)
    clients = deployed_stack.clients
    with clients.postgresql() as conn:
        conn.execute("DELETE FROM memory_items WHERE tenant_id = ANY(%s)", [TENANTS])
        wl.write_postgres(conn, data)
    store = clients.redis()
    wl.write_redis(store, data)
    qdrant = clients.qdrant()
    wl.write_qdrant(qdrant, data, COLLECTION)
    try:
        yield data
    finally:
        store.delete(*[e.key for e in data.redis])
        store.close()
        qdrant.delete_collection(COLLECTION)
        qdrant.close()
        with clients.postgresql() as conn:
            conn.execute("SET CONSTRAINTS ALL DEFERRED")
            conn.execute("DELETE FROM memory_items WHERE tenant_id = ANY(%s)", [TENANTS])
        ring_path.unlink()


def test_validate_then_a_soft_rebuild_on_the_backup_host(
    deployed_stack: DeployedStack, loaded: wl.Workload
) -> None:
    tenant = TENANTS[0]
    checked = run("rebuild.validate", tenant)
    assert checked.returncode == 0, checked.stderr
    counts = checked.json()["tiers"]
    assert counts["redis"]["good"] == sum(e.tenant == tenant for e in loaded.redis)
    assert counts["qdrant"]["good"] == sum(p.payload["tenant_id"] == tenant for p in loaded.qdrant)

    victim = next(e for e in loaded.redis if e.tenant == tenant)
    store = deployed_stack.clients.redis()
    store.set(victim.key, victim.value.replace('"', "'"), keepttl=True)  # not JSON any more
    point = next(p for p in loaded.qdrant if p.payload["tenant_id"] == tenant)
    qdrant = deployed_stack.clients.qdrant()
    qdrant.upsert(
        COLLECTION,
        points=[models.PointStruct(id=point.id, vector=[0.0] * 16, payload=point.payload)],
        wait=True,
    )
    untouched = {e.key: store.get(e.key) for e in loaded.redis if e.key != victim.key}

    found = run("rebuild.validate", tenant)
    assert found.returncode == 1
    assert {o["id"] for o in found.json()["tiers"]["redis"]["offenders"]} == {victim.key}

    refused = run("rebuild.soft", tenant, env={"MEMOPS_BACKUP_HOST": "localhost"})
    assert refused.returncode == 2 and "pass --yes" in refused.stderr
    assert store.get(victim.key) is not None

    done = run("rebuild.soft", tenant, "--yes", env={"MEMOPS_BACKUP_HOST": "localhost"})
    assert done.returncode == 0, done.stderr
    document = done.json()
    assert document["ran_on"] == "localhost"
    assert document["plan"]["redis_keys"] == [victim.key]
    assert [p["id"] for p in document["plan"]["points"]] == [point.id]
    assert store.get(victim.key) is None
    assert {k: store.get(k) for k in untouched} == untouched
    assert qdrant.retrieve(COLLECTION, ids=[point.id]) == []
    assert run("rebuild.validate", TENANTS[1]).returncode == 0
    store.close()
    qdrant.close()


def test_the_recall_scenario_passes_on_the_deployed_stack(deployed_stack: DeployedStack) -> None:
    done = run("validate.recall")
    assert done.returncode == 0, done.stderr
    document = done.json()
    assert document["success_rate"] >= 0.95 and document["skipped_tiers"] == []
    report = json.loads(Path(document["report"]).read_text(encoding="utf-8"))
    assert len(report["cases"]) == 20
