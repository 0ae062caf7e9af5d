"""rebuild.validate against a real Redis, PostgreSQL and the Qdrant stand-in.

The workload (hostile tenant names, half its Redis values sealed with the key
ring) goes into all three tiers. What these tests prove: a namespace as written
validates clean, with counts equal to the workload's; each kind of damage (a
flipped value, a tampered ciphertext, a value under a key the ring lacks, a bad
embedding, a changed vector, a point without its row, a row without its
point) is reported under its verdict and reason with its id, and only in its
own namespace; a tenant with no entries is refused; the read benchmark falls
under its bar when the semantic tier is gone. Soft and hard rebuilds change
exactly what they say.
"""

from __future__ import annotations

import json
import shlex
import uuid
from dataclasses import dataclass
from typing import Any

import pytest
from op_calls import call
from qdrant_client import models
from three_tiers import COLLECTIONS, Stack

from memops.exitcodes import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK
from memops.keys.ring import new_keyring
from memops.memory import values as mv
from memops.ops.backup import CREATE, RESTORE
from memops.ops.rebuild import HARD, REINDEX, SOFT
from memops.rebuild import validate as v
from memops.testing import workload as wl

pytestmark = [
    pytest.mark.integration,
    pytest.mark.filterwarnings("ignore:Api key is used with an insecure connection"),
]


def tenant_with_sealed_and_plain(load: wl.Workload) -> str:
    for tenant in load.tenants:
        ids = {e.key_id for e in load.redis if e.tenant == tenant}
        if None in ids and len(ids) > 1 and "\t" not in tenant:
            return tenant
    raise AssertionError("the workload has no tenant with both kinds of value")


def other_tenant(load: wl.Workload, tenant: str) -> str:
    return next(t for t in load.tenants if t != tenant and "\t" not in t)


def live_rows(load: wl.Workload, tenant: str) -> list[wl.MemoryItem]:
    return [i for i in load.items_of(tenant) if i.anonymized_at is None and i.deleted_at is None]


def offenders(document: dict[str, Any], tier: str) -> set[tuple[str, str, str]]:
    return {(o["id"], o["verdict"], o["reason"]) for o in document["tiers"][tier]["offenders"]}


# ------------------------------------------------------------------------ clean data


def test_a_namespace_as_written_validates_clean_with_the_workloads_counts(
    tier_stack: Stack,
) -> None:
    tenant = tenant_with_sealed_and_plain(tier_stack.load)
    code, document, err = tier_stack.call(namespace=tenant)
    assert code == EXIT_OK, err
    tiers = document["tiers"]
    assert tiers["redis"]["good"] == sum(e.tenant == tenant for e in tier_stack.load.redis)
    assert tiers["postgresql"]["good"] == len(live_rows(tier_stack.load, tenant))
    assert tiers["qdrant"]["good"] == sum(
        p.payload["tenant_id"] == tenant
        for p in tier_stack.load.qdrant
        if f"memory_{p.kind}" in COLLECTIONS
    )
    assert document["clean"] is True


def test_every_hostile_namespace_counts_only_its_own_entries(tier_stack: Stack) -> None:
    ring_path = tier_stack.state / "keyring.json"
    ring = json.loads(ring_path.read_text())
    assert ring["active"]
    for tenant in tier_stack.load.tenants:
        report = v.validate_namespace(
            tenant,
            redis_scope=v.RedisScope(tier_stack.redis, tier_stack.load.prefix, None),
            postgres=tier_stack.pg,
        )
        redis_report = report.tiers["redis"]
        mine = [e for e in tier_stack.load.redis if e.tenant == tenant]
        assert redis_report.checked == len(mine), tenant
        # Without the key ring the sealed values are undecryptable, never corrupt.
        assert redis_report.counts[mv.UNDECRYPTABLE] == sum(e.key_id is not None for e in mine)
        assert redis_report.counts[mv.CORRUPT] == 0
        assert report.tiers["postgresql"].checked == len(live_rows(tier_stack.load, tenant)), tenant
        assert report.tiers["postgresql"].clean, tenant


def test_a_tenant_with_no_entries_is_refused_not_reported_clean(tier_stack: Stack) -> None:
    code, document, err = tier_stack.call(namespace="acme:e")  # a prefix of a real tenant
    assert code == EXIT_BAD_INPUT
    assert "no entries" in err and document["ok"] is False


def test_an_unknown_tier_is_refused(tier_stack: Stack) -> None:
    code, _, err = tier_stack.call(namespace="acme", tier="redis,nosuch")
    assert code == EXIT_BAD_INPUT and "unknown 'nosuch'" in err


# ------------------------------------------------------------------------- damage


def damage_redis(tier_stack: Stack, tenant: str) -> dict[str, str]:
    """One plain value flipped, one ciphertext tampered, one value under a foreign key."""
    mine = [e for e in tier_stack.load.redis if e.tenant == tenant]
    plain = next(e for e in mine if e.key_id is None)
    sealed = [e for e in mine if e.key_id is not None]
    tier_stack.redis.set(
        plain.key, plain.value.replace('"content":"', '"content":"X', 1), keepttl=True
    )
    envelope = json.loads(sealed[0].value)
    envelope["ciphertext"] = "A" + envelope["ciphertext"][1:]
    if envelope["ciphertext"] == json.loads(sealed[0].value)["ciphertext"]:
        envelope["ciphertext"] = "B" + envelope["ciphertext"][1:]
    tier_stack.redis.set(sealed[0].key, mv.canonical_json(envelope), keepttl=True)
    foreign = new_keyring()
    tier_stack.redis.set(
        sealed[-1].key,
        mv.sealed_value(
            "x", "t", key_name=sealed[-1].key, key_id=foreign.active, secret=foreign.active_secret
        ),
        keepttl=True,
    )
    assert sealed[0].key != sealed[-1].key
    return {
        plain.key: mv.HASH_MISMATCH,
        sealed[0].key: mv.TAG_MISMATCH,
        sealed[-1].key: mv.UNKNOWN_KEY,
    }


@dataclass(frozen=True)
class Damage:
    tenant: str
    redis: dict[str, str]  # key -> reason
    bad_embedding: str  # row whose embedding became NaN (its point is now orphaned)
    moved_vector: str  # point whose vector no longer matches its row
    lost_point: str  # row whose point was deleted
    stray: str  # point of no row
    edited: str  # live row without a point whose content changed behind its hash


def damage(tier_stack: Stack, tenant: str) -> Damage:
    broken_keys = damage_redis(tier_stack, tenant)
    indexed = [
        i for i in live_rows(tier_stack.load, tenant) if i.indexed_at and i.deleted_at is None
    ]
    indexed = [i for i in indexed if i.embedding is not None]
    assert len(indexed) >= 3, "the workload gave this tenant too few indexed rows"
    bad_embedding, moved_vector, lost_point = indexed[0], indexed[1], indexed[2]
    edited = next(
        i
        for i in live_rows(tier_stack.load, tenant)
        if i.deleted_at is None and not (i.indexed_at and i.embedding is not None)
    )
    tier_stack.pg.execute(
        "UPDATE memory_items SET content = content || ' (edited)' WHERE id = %s", (edited.id,)
    )
    dim = tier_stack.load.vector_dim
    tier_stack.pg.execute(
        "UPDATE memory_items SET embedding = %s::real[] WHERE id = %s",
        ([float("nan")] * dim, bad_embedding.id),
    )
    collection_of = {p.id: f"memory_{p.kind}" for p in tier_stack.load.qdrant}
    moved = next(p for p in tier_stack.load.qdrant if p.id == moved_vector.id)
    tier_stack.qdrant.upsert(
        collection_of[moved.id],
        points=[models.PointStruct(id=moved.id, vector=[0.5] * dim, payload=moved.payload)],
        wait=True,
    )
    tier_stack.qdrant.delete(
        collection_of[lost_point.id],
        points_selector=models.PointIdsList(points=[lost_point.id]),
        wait=True,
    )
    stray = str(uuid.UUID(int=12345, version=4))
    tier_stack.qdrant.upsert(
        "memory_chat",
        points=[
            models.PointStruct(
                id=stray, vector=[0.25] * dim, payload={"tenant_id": tenant, "memory_id": stray}
            )
        ],
        wait=True,
    )
    return Damage(
        tenant, broken_keys, bad_embedding.id, moved_vector.id, lost_point.id, stray, edited.id
    )


def test_each_kind_of_damage_is_named_and_stays_in_its_namespace(tier_stack: Stack) -> None:
    tenant = tenant_with_sealed_and_plain(tier_stack.load)
    other = other_tenant(tier_stack.load, tenant)
    done = damage(tier_stack, tenant)
    broken_keys = done.redis

    code, document, err = tier_stack.call(namespace=tenant)
    assert code == EXIT_FAILED and "not clean" in err
    redis_found = offenders(document, "redis")
    assert {(k, r) for k, _, r in redis_found} == set(broken_keys.items())
    assert document["tiers"]["redis"]["corrupt"] == 2
    assert document["tiers"]["redis"]["undecryptable"] == 1
    assert offenders(document, "postgresql") == {
        (done.bad_embedding, v.CORRUPT, v.EMBEDDING_INVALID),
        (done.edited, v.CORRUPT, v.CONTENT_HASH_MISMATCH),
        (done.lost_point, v.ORPHANED, v.NO_POINT),
    }
    # The NaN row has no usable embedding any more, so its point no longer matches a row.
    assert offenders(document, "qdrant") == {
        (done.moved_vector, v.CORRUPT, v.VECTOR_MISMATCH),
        (done.stray, v.ORPHANED, v.NO_LIVE_ROW),
        (done.bad_embedding, v.ORPHANED, v.NO_LIVE_ROW),
    }

    code, document, err = tier_stack.call(namespace=other)
    assert code == EXIT_OK, err


def test_the_read_benchmark_falls_under_its_bar_when_the_semantic_tier_is_gone(
    tier_stack: Stack,
) -> None:
    tenant = tenant_with_sealed_and_plain(tier_stack.load)
    code, document, err = tier_stack.call(namespace=tenant, benchmark=True)
    assert code == EXIT_OK, err
    assert document["benchmark"]["hit_rate"] == 1.0
    assert document["benchmark"]["tiers"]["qdrant"]["reads"] > 0
    selector = models.Filter(
        must=[models.FieldCondition(key="tenant_id", match=models.MatchValue(value=tenant))]
    )
    for name in COLLECTIONS:
        tier_stack.qdrant.delete(
            name, points_selector=models.FilterSelector(filter=selector), wait=True
        )
    code, document, err = tier_stack.call(
        namespace=tenant, tier="postgresql,qdrant", benchmark=True, min_hit_rate=0.8
    )
    assert code == EXIT_FAILED
    assert document["benchmark"]["tiers"]["qdrant"]["hits"] == 0
    assert document["benchmark"]["hit_rate"] < 0.8


# --------------------------------------------------------------------- soft rebuild


def snapshot(tier_stack: Stack) -> dict[str, Any]:
    """Every Redis value and TTL, every row, every point: to compare before and after."""
    keys = sorted(tier_stack.redis.scan_iter(count=1000))
    rows = tier_stack.pg.execute("SELECT * FROM memory_items ORDER BY id").fetchall()
    points = {}
    for name in COLLECTIONS:
        records, _ = tier_stack.qdrant.scroll(
            name, limit=10_000, with_payload=True, with_vectors=True
        )
        points |= {(name, str(r.id)): (r.payload, r.vector) for r in records}
    return {
        "redis": {k: (tier_stack.redis.get(k), tier_stack.redis.pexpiretime(k)) for k in keys},
        "rows": {str(r[0]): repr(r) for r in rows},  # repr: NaN equals NaN
        "points": points,
    }


def soft_call(tier_stack: Stack, **raw: Any) -> tuple[int, dict[str, Any], str]:
    given = {"tier": None, "include_undecryptable": False, "dry_run": False, "yes": True} | raw
    return call(SOFT, tier_stack.inventory, tier_stack.capsys, **given)


def test_soft_rebuild_removes_exactly_the_corrupt_entries(tier_stack: Stack) -> None:
    tenant = tenant_with_sealed_and_plain(tier_stack.load)
    done = damage(tier_stack, tenant)
    before = snapshot(tier_stack)

    code, document, err = soft_call(tier_stack, namespace=tenant, dry_run=True)
    assert code == EXIT_OK, err
    assert snapshot(tier_stack) == before  # the dry run changed nothing
    corrupt_keys = {k for k, r in done.redis.items() if r != mv.UNKNOWN_KEY}
    assert set(document["plan"]["redis_keys"]) == corrupt_keys
    assert set(document["plan"]["rows"]) == {done.bad_embedding, done.edited}

    code, document, err = soft_call(tier_stack, namespace=tenant, yes=False)
    assert code == EXIT_BAD_INPUT and "--yes" in err
    assert snapshot(tier_stack) == before  # not confirmed: nothing changed

    code, document, err = soft_call(tier_stack, namespace=tenant)
    assert code == EXIT_OK, err
    assert document["backup_set"]
    after = snapshot(tier_stack)
    # Redis: exactly the corrupt values are gone (the undecryptable one is kept).
    assert set(before["redis"]) - set(after["redis"]) == {k.encode() for k in corrupt_keys}
    assert all(after["redis"][k] == before["redis"][k] for k in after["redis"])
    # PostgreSQL: exactly the bad rows are soft-deleted, every other row is unchanged.
    changed = {i for i, row in after["rows"].items() if row != before["rows"][i]}
    assert changed == {done.bad_embedding, done.edited}
    deleted_at = tier_stack.pg.execute(
        "SELECT deleted_at FROM memory_items WHERE id = %s", (done.bad_embedding,)
    ).fetchone()
    assert deleted_at is not None and deleted_at[0] is not None
    # Qdrant: the mismatched, the stray and the bad row's points are gone; no other.
    gone = {i for _, i in set(before["points"]) - set(after["points"])}
    assert gone == {done.moved_vector, done.stray, done.bad_embedding}
    assert all(after["points"][p] == before["points"][p] for p in after["points"])
    # What is left: the undecryptable value, and the row without its point (for reindex).
    assert document["rows_without_point"] == [done.lost_point]
    remaining = document["after"]["tiers"]
    assert remaining["redis"]["undecryptable"] == 1 and remaining["redis"]["corrupt"] == 0
    assert remaining["qdrant"]["corrupt"] == remaining["qdrant"]["orphaned"] == 0
    assert remaining["postgresql"]["corrupt"] == 0  # soft-deleted rows are out of service
    audit = tier_stack.pg.execute(
        "SELECT action, tenant_id, details FROM execution_audit_log ORDER BY id DESC LIMIT 1"
    ).fetchone()
    assert audit is not None and audit[0] == "rebuild.soft" and audit[1] == tenant
    assert set(audit[2]["soft_deleted"]) == {done.bad_embedding, done.edited}


def test_soft_rebuild_of_a_clean_namespace_changes_nothing(tier_stack: Stack) -> None:
    tenant = other_tenant(tier_stack.load, tenant_with_sealed_and_plain(tier_stack.load))
    before = snapshot(tier_stack)
    code, document, err = soft_call(tier_stack, namespace=tenant)
    assert code == EXIT_OK, err
    assert document["changed"] == 0 and "backup_set" not in document
    assert snapshot(tier_stack) == before


# --------------------------------------------------------------------- hard rebuild


def outside(found: dict[str, Any], tenant: str, prefix: str) -> dict[str, Any]:
    """The snapshot without the tenant's own entries."""
    rows = dict(found["rows"])
    return {
        "redis": {
            k: v
            for k, v in found["redis"].items()
            if not wl.key_in_namespace(k.decode(), prefix, tenant)
        },
        "rows": {i: r for i, r in rows.items() if found["tenants"][i] != tenant},
        "points": {p: v for p, v in found["points"].items() if v[0].get("tenant_id") != tenant},
    }


def full_snapshot(tier_stack: Stack) -> dict[str, Any]:
    found = snapshot(tier_stack)
    tenants = tier_stack.pg.execute("SELECT id::text, tenant_id FROM memory_items").fetchall()
    return found | {"tenants": dict(tenants)}


def hard_call(tier_stack: Stack, **raw: Any) -> tuple[int, dict[str, Any], str]:
    given = {"tier": None, "dry_run": False, "yes": True} | raw
    return call(HARD, tier_stack.inventory, tier_stack.capsys, **given)


def backup_of(tier_stack: Stack, tenant: str) -> str:
    code, document, err = call(
        CREATE, tier_stack.inventory, tier_stack.capsys, tier=None, namespace=[tenant], target=None
    )
    assert code == EXIT_OK, err
    return str(document["set_id"])


def test_hard_rebuild_gives_back_the_set_and_touches_no_other_namespace(tier_stack: Stack) -> None:
    tenant = tenant_with_sealed_and_plain(tier_stack.load)
    set_id = backup_of(tier_stack, tenant)
    damage(tier_stack, tenant)
    before = full_snapshot(tier_stack)

    code, document, err = hard_call(tier_stack, namespace=tenant, from_backup=set_id, dry_run=True)
    assert code == EXIT_OK, err
    assert document["in_set"]["redis"] == sum(e.tenant == tenant for e in tier_stack.load.redis)
    assert full_snapshot(tier_stack) == before

    code, document, err = hard_call(tier_stack, namespace=tenant, from_backup=set_id)
    assert code == EXIT_OK, err
    assert document["after"]["clean"] is True and document["safety_backup"] != set_id
    after = full_snapshot(tier_stack)
    assert outside(after, tenant, tier_stack.load.prefix) == outside(
        before, tenant, tier_stack.load.prefix
    )
    code, _, err = tier_stack.call(namespace=tenant)
    assert code == EXIT_OK, err
    assert wl.verify_postgres(tier_stack.pg, tier_stack.load) == []
    assert wl.verify_redis(tier_stack.redis, tier_stack.load) == []


def test_hard_rebuild_refuses_a_set_without_the_namespace_and_changes_nothing(
    tier_stack: Stack,
) -> None:
    tenant = tenant_with_sealed_and_plain(tier_stack.load)
    other = other_tenant(tier_stack.load, tenant)
    set_id = backup_of(tier_stack, other)
    before = full_snapshot(tier_stack)
    code, _, err = hard_call(tier_stack, namespace=tenant, from_backup=set_id)
    assert code == EXIT_BAD_INPUT and "not in its" in err
    code, _, err = hard_call(tier_stack, namespace=tenant, from_backup="../etc")
    assert code == EXIT_BAD_INPUT
    code, _, err = hard_call(tier_stack, namespace=tenant, from_backup="20990101T000000Z-deadbeef")
    assert code == EXIT_BAD_INPUT
    assert full_snapshot(tier_stack) == before


def test_hard_rebuild_from_a_damaged_set_changes_nothing(tier_stack: Stack) -> None:
    """The set verifies before the Redis namespace is cleared: a damaged set clears nothing."""
    tenant = tenant_with_sealed_and_plain(tier_stack.load)
    set_id = backup_of(tier_stack, tenant)
    set_dir = tier_stack.state / "backups" / set_id
    victim = next(path for path in sorted(set_dir.rglob("*")) if "redis" in str(path.parent))
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0x01
    victim.write_bytes(bytes(data))
    damage(tier_stack, tenant)
    before = full_snapshot(tier_stack)

    code, _, err = hard_call(tier_stack, namespace=tenant, from_backup=set_id)
    assert full_snapshot(tier_stack) == before  # the namespace's keys are all still there
    assert code == EXIT_BAD_INPUT, err
    assert "nothing was restored" in err and "safety backup" in err


def test_a_hard_rebuild_that_fails_after_the_clear_names_the_way_back(
    tier_stack: Stack, tiers_cluster: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL goes away once Redis was cleared: the error names the safety set and the
    exact command that puts the namespace back, and that command does."""
    tenant = tenant_with_sealed_and_plain(tier_stack.load)
    set_id = backup_of(tier_stack, tenant)
    before = full_snapshot(tier_stack)
    import memops.ops.rebuild as rebuild_module

    real_clear = rebuild_module.clear_namespace

    def clear_then_lose_postgresql(*args: Any, **kwargs: Any) -> Any:
        done = real_clear(*args, **kwargs)
        tiers_cluster.stop()
        return done

    monkeypatch.setattr(rebuild_module, "clear_namespace", clear_then_lose_postgresql)
    try:
        code, _, err = hard_call(tier_stack, namespace=tenant, from_backup=set_id)
    finally:
        tiers_cluster.start()
    assert code == EXIT_FAILED, err
    assert "may be part way" in err and "invoke backup.restore" in err
    command = err[err.index("`invoke ") + 1 : err.rindex("`")]
    safety = command.split()[2]
    assert safety != set_id and f"--namespace {shlex.quote(tenant)}" in command
    audit = [
        json.loads(line) for line in (tier_stack.state / "audit.jsonl").read_text().splitlines()
    ]
    assert any(
        line["result"] == "in-progress" and safety in line["details"]["recovery"]
        for line in audit
        if line["action"] == "rebuild.hard"
    )

    argv = shlex.split(command)[1:]
    assert argv[:2] == ["backup.restore", safety]
    raw = {"set_id": safety, "namespace": [tenant], "tier": argv[argv.index("--tier") + 1]}
    tier_stack.pg = tiers_cluster.connect(tier_stack.pg.info.dbname, autocommit=True)
    code, _, err = call(
        RESTORE,
        tier_stack.inventory,
        tier_stack.capsys,
        **raw,
        target=None,
        dry_run=False,
        yes=True,
    )
    assert code == EXIT_OK, err
    assert full_snapshot(tier_stack) == before


# ------------------------------------------------------------------------- reindex


def test_reindex_gives_back_the_emptied_points_and_nothing_else(tier_stack: Stack) -> None:
    tenant = tenant_with_sealed_and_plain(tier_stack.load)
    before = snapshot(tier_stack)
    selector = models.Filter(
        must=[models.FieldCondition(key="tenant_id", match=models.MatchValue(value=tenant))]
    )
    for name in COLLECTIONS:
        tier_stack.qdrant.delete(
            name, points_selector=models.FilterSelector(filter=selector), wait=True
        )
    emptied = snapshot(tier_stack)
    mine = {p for p in before["points"] if p not in emptied["points"]}
    assert mine

    raw = {"keep_orphans": False, "dry_run": True, "yes": True}
    code, document, err = call(
        REINDEX, tier_stack.inventory, tier_stack.capsys, namespace=tenant, **raw
    )
    assert code == EXIT_OK, err
    assert document["created"] == len(mine) and snapshot(tier_stack) == emptied

    code, document, err = call(
        REINDEX,
        tier_stack.inventory,
        tier_stack.capsys,
        namespace=tenant,
        **raw | {"dry_run": False},
    )
    assert code == EXIT_OK, err
    assert document["after"]["clean"] is True
    after = snapshot(tier_stack)
    assert after["points"].keys() == before["points"].keys()
    for point, (payload, vector) in before["points"].items():
        assert after["points"][point][0] == payload
        assert after["points"][point][1] == pytest.approx(vector, abs=1e-6)
    assert after["redis"] == before["redis"] and after["rows"] == before["rows"]
