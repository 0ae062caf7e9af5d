"""Restores and reindexes keep the quarantines operators set (quarantine.json).

What these tests prove, against scratch PostgreSQL and the Qdrant stand-in: a
whole restore of a set taken before tenant A was quarantined leaves A quarantined
(its memory_quarantine row is put back, its restored points leave the shared
collections again), and a set taken while tenant B was quarantined does not
quarantine B again once it was released (its row goes, its points come back from
the set's quarantine collection); the restore says what it kept; releasing A
afterwards gives back exactly the data of before. A reindex of a quarantined
tenant whose points were all lost rebuilds them in its quarantine collections, not
in the shared ones, and the release brings exactly those back.
"""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from op_calls import call
from qdrant_client import models
from three_tiers import Stack

from memops.backup.qdrant.tier import QdrantTier, point_digest
from memops.deploy.targets import QdrantTarget
from memops.deploy.targets_file import merge_targets
from memops.exitcodes import EXIT_OK
from memops.model import is_quarantine_collection
from memops.ops.backup import CREATE, RESTORE
from memops.ops.quarantine import QUARANTINE, RELEASE
from memops.ops.rebuild import REINDEX
from memops.quarantine import state as quarantine_state
from memops.testing.pgcluster import ScratchCluster

pytestmark = pytest.mark.integration

TIERS = "postgresql,qdrant"


def _call(stack: Stack, op: Any, **raw: Any) -> dict[str, Any]:
    code, document, err = call(op, stack.inventory, stack.capsys, **raw)
    assert code == EXIT_OK, err
    return document


def _quarantine(stack: Stack, op: Any, tenant: str) -> None:
    _call(stack, op, namespace=tenant, tier=TIERS, dry_run=False, yes=True)


def _whole_backup(stack: Stack) -> str:
    return str(_call(stack, CREATE, tier=TIERS, namespace=[], target=None)["set_id"])


def _restore(stack: Stack, set_id: str) -> dict[str, Any]:
    raw = {"tier": TIERS, "namespace": [], "target": None, "dry_run": False, "yes": True}
    return _call(stack, RESTORE, set_id=set_id, **raw)


def _admin(stack: Stack, cluster: ScratchCluster) -> psycopg.Connection[Any]:
    """A new superuser connection: a whole restore swaps the database under old ones."""
    return cluster.admin(stack.pg.info.dbname)


def _hidden(stack: Stack, cluster: ScratchCluster) -> set[str]:
    with _admin(stack, cluster) as conn:
        return {row[0] for row in conn.execute("SELECT tenant_id FROM memory_quarantine")}


def _points(stack: Stack, target: QdrantTarget) -> dict[str, dict[str, set[str]]]:
    """collection -> tenant -> point digests."""
    found: dict[str, dict[str, set[str]]] = {}
    with QdrantTier(target) as tier:
        for collection in tier.collections():
            tenants: dict[str, set[str]] = {}
            for point in tier.scroll(collection):
                tenants.setdefault(point["payload"]["tenant_id"], set()).add(point_digest(point))
            found[collection] = tenants
    return found


def _rows(stack: Stack, cluster: ScratchCluster) -> list[tuple[Any, ...]]:
    with _admin(stack, cluster) as conn:
        query = "SELECT id::text, tenant_id, content FROM memory_items ORDER BY id"
        return conn.execute(query).fetchall()


def test_a_whole_restore_neither_lifts_nor_imposes_a_quarantine(
    tier_stack: Stack, tiers_cluster: ScratchCluster, standin: Any
) -> None:
    a, b = tier_stack.load.tenants[:2]
    target, cluster = standin.target, tiers_cluster
    # a whole restore creates and swaps databases as the cluster's superuser (socket)
    admin = {"socket_dir": str(cluster.socket_dir), "port": cluster.port}
    deployment = {"postgresql": {"app_user": cluster.app_role, **admin}}
    merge_targets(tier_stack.state, "inv", {}, deployment)
    points_before, rows_before = _points(tier_stack, target), _rows(tier_stack, cluster)

    before_any = _whole_backup(tier_stack)
    _quarantine(tier_stack, QUARANTINE, b)
    while_b = _whole_backup(tier_stack)
    _quarantine(tier_stack, RELEASE, b)
    _quarantine(tier_stack, QUARANTINE, a)
    quarantined_a = _points(tier_stack, target)

    restored = _restore(tier_stack, before_any)  # the set knows no quarantine
    assert _hidden(tier_stack, cluster) == {a}
    assert _points(tier_stack, target) == quarantined_a
    kept = restored["quarantine_reconciled"]
    assert any(repr(a) in line and "postgresql" in line for line in kept)
    assert any(repr(a) in line and "qdrant" in line for line in kept)

    restored = _restore(tier_stack, while_b)  # the set holds b's quarantine
    assert _hidden(tier_stack, cluster) == {a}
    assert _points(tier_stack, target) == quarantined_a
    assert any(repr(b) in line for line in restored["quarantine_reconciled"])

    _quarantine(tier_stack, RELEASE, a)
    after = _points(tier_stack, target)
    assert not any(is_quarantine_collection(c) for c in after)
    assert after == points_before
    assert _rows(tier_stack, cluster) == rows_before


def test_a_reindex_during_a_quarantine_fills_the_quarantine_collections(
    tier_stack: Stack, standin: Any
) -> None:
    """The reindex of a quarantined tenant writes where its points are kept, not where the
    application reads; the release then brings back exactly the reindexed points."""
    tenant, target = tier_stack.load.tenants[0], standin.target
    before = _points(tier_stack, target)
    _quarantine(tier_stack, QUARANTINE, tenant)
    during = _points(tier_stack, target)
    for collection in (c for c in during if is_quarantine_collection(c)):
        tier_stack.qdrant.delete_collection(collection)  # every quarantined point lost

    raw = {"keep_orphans": False, "yes": True}
    planned = _call(tier_stack, REINDEX, namespace=tenant, dry_run=True, **raw)
    assert planned["created"] == sum(len(d.get(tenant, ())) for d in before.values())
    done = _call(tier_stack, REINDEX, namespace=tenant, dry_run=False, **raw)
    assert done["after"]["clean"] is True
    assert _points(tier_stack, target) == during  # the shared collections still without it

    _quarantine(tier_stack, RELEASE, tenant)
    assert _points(tier_stack, target) == before


def test_a_namespace_restore_during_a_quarantine_records_only_the_collections_it_filled(
    tier_stack: Stack, standin: Any
) -> None:
    """A set's collection in which the tenant has no point gets no quarantine collection,
    and none goes on record: the release afterwards finds every recorded one."""
    tenant, target = tier_stack.load.tenants[0], standin.target
    tier_stack.qdrant.create_collection(
        "memory_empty", vectors_config=models.VectorParams(size=4, distance=models.Distance.DOT)
    )
    before = _points(tier_stack, target)
    raw = {"tier": TIERS, "target": None}
    set_id = str(_call(tier_stack, CREATE, namespace=[tenant], **raw)["set_id"])
    _quarantine(tier_stack, QUARANTINE, tenant)
    during = _points(tier_stack, target)

    _call(tier_stack, RESTORE, set_id=set_id, namespace=[tenant], dry_run=False, yes=True, **raw)
    assert _points(tier_stack, target) == during
    recorded = quarantine_state.load(tier_stack.state)[tenant]["qdrant_moves"]
    assert "memory_empty" not in recorded and set(recorded.values()) <= set(during)

    _quarantine(tier_stack, RELEASE, tenant)
    assert _points(tier_stack, target) == before


def test_a_whole_restore_killed_after_the_swap_keeps_the_quarantined_tenant_hidden(
    tier_stack: Stack, tiers_cluster: ScratchCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The quarantine is applied to the restored database before it is swapped in: a
    restore that dies right after the swap (before anything else runs) exposes nothing,
    and the application never had a session on the copy while it loaded."""
    import memops.backup.postgresql.tier as pg_module
    import memops.quarantine.procedure as quarantine_module

    cluster = tiers_cluster
    admin = {"socket_dir": str(cluster.socket_dir), "port": cluster.port}
    deployment = {"postgresql": {"app_user": cluster.app_role, **admin}}
    merge_targets(tier_stack.state, "inv", {}, deployment)
    tenant = tier_stack.load.tenants[0]
    set_id = _call(tier_stack, CREATE, tier="postgresql", namespace=[], target=None)["set_id"]
    _quarantine(tier_stack, QUARANTINE, tenant)  # after the set: the set knows none
    dbname = tier_stack.pg.info.dbname

    refused: list[str] = []
    real_check = pg_module.PostgresTier._check_loaded

    def check_and_try_as_the_application(self: Any, name: str, artifact: Any) -> None:
        with pytest.raises(psycopg.OperationalError) as caught:
            cluster.connect(name).close()
        refused.append(str(caught.value))
        real_check(self, name, artifact)

    def die_after_the_swap(*_args: Any, **_kwargs: Any) -> list[str]:
        raise KeyboardInterrupt  # as good as a SIGKILL for what follows the swap

    monkeypatch.setattr(pg_module.PostgresTier, "_check_loaded", check_and_try_as_the_application)
    monkeypatch.setattr(quarantine_module, "reconcile_whole_restore", die_after_the_swap)
    raw = {"tier": "postgresql", "namespace": [], "target": None, "dry_run": False, "yes": True}
    with pytest.raises(KeyboardInterrupt):
        call(RESTORE, tier_stack.inventory, tier_stack.capsys, set_id=set_id, **raw)

    assert refused and "too many connections" in refused[0]
    with cluster.connect(dbname) as app:  # the swapped-in database, as the application sees it
        seen = app.execute(
            "SELECT count(*) FROM memory_items WHERE tenant_id = %s", (tenant,)
        ).fetchone()[0]
    assert seen == 0
    assert _hidden(tier_stack, cluster) == {tenant}
    with _admin(tier_stack, cluster) as conn:
        assert (
            conn.execute(
                "SELECT count(*) FROM memory_items WHERE tenant_id = %s", (tenant,)
            ).fetchone()[0]
            > 0
        )  # hidden, not gone
