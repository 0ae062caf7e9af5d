"""docs/runbooks/memory-rebuild.md, every step run as typed, on the deployed test stack.

The scenario is the runbook's: tenant ``acme`` (next to ``acme:eu``) in all three
tiers, a namespace backup taken while it was sound (the set the responder picks
in section 3), then damage in every tier: a Redis value whose content no longer
matches its hash, one sealed with a key the ring does not hold, a row edited
behind its content hash, a row whose embedding became NaN, a point whose vector
no longer matches its row, a row that lost its point, a point of no row. The
page is then followed from triage to release: quarantine, soft rebuild, reindex,
hard rebuild from the sound set, the read benchmark, release. Each step's
output must hold the page's lines in order (tests/runbook_steps.py); afterwards
``acme`` validates clean and ``acme:eu`` is byte for byte what it was in every
tier.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from integration_helpers import TEST_INVENTORY, DeployedStack, invoke
from qdrant_client import models
from runbook_steps import check_output, parse, run_invoke

from memops.keys.ring import KeyRing, load_keyring, new_keyring, save_keyring
from memops.memory import values as mv
from memops.memory.qdrant_points import tenant_selector
from memops.paths import PROJECT_DIR
from memops.quarantine import state as quarantine_state
from memops.rebuild.redis_clear import clear_namespace
from memops.testing import workload as wl

pytestmark = pytest.mark.integration

RUNBOOK = PROJECT_DIR / "docs" / "runbooks" / "memory-rebuild.md"
TENANT, NEIGHBOUR = "acme", "acme:eu"
SECTIONS = [
    "0. Triage: how bad is it?",
    "1. Stop the damage spreading: quarantine",
    "2. Small damage: soft rebuild",
    "3. Points lost or wrong: reindex",
    "4. Large damage: hard rebuild from a backup",
    "5. Done",
    "6. Release the namespace",
]


def run(task: str, *args: str) -> Any:
    done = invoke(task, *args, "--inventory", TEST_INVENTORY, "--json")
    assert done.returncode in (0, 1), (task, done.stdout, done.stderr)
    return done.json()


@dataclass
class Scenario:
    load: wl.Workload
    collections: tuple[str, ...]


def _forget(stack: DeployedStack, collections: tuple[str, ...]) -> None:
    """No trace of the scenario's tenants in any tier (other tests' data stays)."""
    clients = stack.clients
    store = clients.redis()
    prefix = stack.targets.deployment["redis"]["key_prefix"]
    for tenant in (TENANT, NEIGHBOUR):
        clear_namespace(store, prefix, tenant)
    store.close()
    with clients.postgresql() as conn:
        conn.execute("SET CONSTRAINTS ALL DEFERRED")
        conn.execute("DELETE FROM memory_items WHERE tenant_id = ANY(%s)", [[TENANT, NEIGHBOUR]])
    qdrant = clients.qdrant()
    for name in [c.name for c in qdrant.get_collections().collections]:
        if name in collections:
            qdrant.delete_collection(name)
            continue
        for tenant in (TENANT, NEIGHBOUR):
            qdrant.delete(
                name,
                points_selector=models.FilterSelector(filter=tenant_selector(tenant)),
                wait=True,
            )
    qdrant.close()


@pytest.fixture
def scenario(deployed_stack: DeployedStack) -> Iterator[Scenario]:
    ring_path = deployed_stack.state_dir / "keyring.json"
    had_ring = ring_path.exists()
    ring: KeyRing = load_keyring(ring_path) if had_ring else new_keyring()
    if not had_ring:
        save_keyring(ring_path, ring)
    prefix = deployed_stack.targets.deployment["redis"]["key_prefix"]
    load = wl.generate(
        seed=6161, tenants=[TENANT, NEIGHBOUR], prefix=prefix, items_per_tenant=10, keyring=ring
    )
    collections = tuple(f"memory_{kind}" for kind in wl.SOURCE_KINDS)
    _forget(deployed_stack, collections)
    clients = deployed_stack.clients
    with clients.postgresql() as conn:
        wl.write_postgres(conn, load)
    store = clients.redis()
    wl.write_redis(store, load)
    store.close()
    qdrant = clients.qdrant()
    for name in collections:
        wl.write_qdrant(qdrant, load, name, kind=name.removeprefix("memory_"))
    qdrant.close()
    try:
        yield Scenario(load, collections)
    finally:
        if TENANT in quarantine_state.load(deployed_stack.state_dir):
            invoke("rebuild.release", TENANT, "--yes", "--inventory", TEST_INVENTORY)
        _forget(deployed_stack, collections)
        if not had_ring:
            ring_path.unlink()


def damage(stack: DeployedStack, scenario: Scenario) -> None:
    """The runbook's damage, one entry of each kind, all in ``acme``."""
    load = scenario.load
    clients = stack.clients
    store = clients.redis()
    mine = [e for e in load.redis if e.tenant == TENANT]
    plain = next(e for e in mine if e.key_id is None)
    sealed = next(e for e in mine if e.key_id is not None)
    store.set(plain.key, plain.value.replace('"content":"', '"content":"X', 1), keepttl=True)
    foreign = new_keyring()
    store.set(
        sealed.key,
        mv.sealed_value(
            "x", "t", key_name=sealed.key, key_id=foreign.active, secret=foreign.active_secret
        ),
        keepttl=True,
    )
    store.close()
    indexed = [
        i
        for i in load.items_of(TENANT)
        if i.indexed_at
        and i.deleted_at is None
        and i.embedding is not None
        and i.anonymized_at is None
    ]
    bad_embedding, moved_vector, lost_point = indexed[:3]
    edited = next(
        i
        for i in load.items_of(TENANT)
        if i.content and i.deleted_at is None and i.anonymized_at is None and i not in indexed[:3]
    )
    with clients.postgresql() as conn:
        conn.execute(  # a hand-written UPDATE: the content no longer matches its hash
            "UPDATE memory_items SET content = content || ' (edited)' WHERE id = %s", (edited.id,)
        )
        conn.execute(
            "UPDATE memory_items SET embedding = %s::real[] WHERE id = %s",
            ([float("nan")] * load.vector_dim, bad_embedding.id),
        )
    qdrant = clients.qdrant()
    kind_of = {p.id: p.kind for p in load.qdrant}
    moved = next(p for p in load.qdrant if p.id == moved_vector.id)
    qdrant.upsert(
        f"memory_{moved.kind}",
        points=[
            models.PointStruct(id=moved.id, vector=[0.5] * load.vector_dim, payload=moved.payload)
        ],
        wait=True,
    )
    qdrant.delete(
        f"memory_{kind_of[lost_point.id]}",
        points_selector=models.PointIdsList(points=[lost_point.id]),
        wait=True,
    )
    stray = str(uuid.UUID(int=6161, version=4))
    qdrant.upsert(
        "memory_chat",
        points=[
            models.PointStruct(
                id=stray,
                vector=[0.25] * load.vector_dim,
                payload={"tenant_id": TENANT, "memory_id": stray},
            )
        ],
        wait=True,
    )
    qdrant.close()


def neighbour_snapshot(stack: DeployedStack, scenario: Scenario) -> dict[str, Any]:
    """``acme:eu`` in every tier: Redis DUMPs and TTLs, rows as text, points."""
    clients = stack.clients
    store = clients.redis()
    keys = sorted(e.key for e in scenario.load.redis if e.tenant == NEIGHBOUR)
    redis_part = {k: (store.dump(k), store.pexpiretime(k)) for k in keys}
    store.close()
    with clients.postgresql() as conn:
        rows = conn.execute(
            "SELECT m::text FROM memory_items m WHERE tenant_id = %s ORDER BY id", (NEIGHBOUR,)
        ).fetchall()
    qdrant = clients.qdrant()
    points = {}
    for name in scenario.collections:
        records, _ = qdrant.scroll(
            name,
            scroll_filter=tenant_selector(NEIGHBOUR),
            limit=1000,
            with_vectors=True,
        )
        points[name] = sorted(json.dumps(r.model_dump(), sort_keys=True) for r in records)
    qdrant.close()
    return {"redis": redis_part, "rows": rows, "points": points}


def test_the_runbook_has_its_sections() -> None:
    sections = parse(RUNBOOK.read_text(), heading="## ")
    assert [s.title for s in sections] == SECTIONS
    assert all(s.steps for s in sections)


def test_every_step_prints_what_the_runbook_says(
    deployed_stack: DeployedStack, scenario: Scenario
) -> None:
    sound = run("backup.create", "--namespace", TENANT)  # last night's set
    assert sound["ok"], sound
    damage(deployed_stack, scenario)
    neighbour = neighbour_snapshot(deployed_stack, scenario)
    values = {"set-id": sound["set_id"]}
    ran = 0
    for section in parse(RUNBOOK.read_text(), heading="## "):
        for step in section.steps:
            lines = run_invoke(step, values, Path(TEST_INVENTORY), deployed_stack.state_dir)
            check_output(step, lines, values, captured=())
            ran += 1
    assert ran >= 14
    assert run("rebuild.validate", TENANT)["ok"] is True
    assert neighbour_snapshot(deployed_stack, scenario) == neighbour
    assert TENANT not in quarantine_state.load(deployed_stack.state_dir)
