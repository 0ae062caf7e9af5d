"""rebuild.quarantine / rebuild.release on the Qdrant tier, against the Qdrant stand-in.

What these tests prove: quarantine moves exactly the tenant's points (ids, vectors,
payloads) out of every memory collection into memops-quarantine-* collections (with
the source's vectors config and tenant index), leaving every other tenant's points
(acme:eu next to acme, hostile names) as they were; release puts back exactly the
same points and drops the quarantine collections; a dry run moves nothing. The
application's own token (memops.deploy.qdrant_token, scoped to the memory collections as
the role issues it) sees none of the tenant's points while it is quarantined and
gets 403 on the quarantine collections; points it writes for the tenant meanwhile
are kept and reported by the release.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from op_calls import call, scratch_inventory
from qdrant_client import QdrantClient, models
from qdrant_client.http.exceptions import UnexpectedResponse
from standin_server import RunningStandin

from memops.backup.qdrant.tier import QdrantTier, point_digest
from memops.deploy.qdrant_token import app_token
from memops.exitcodes import EXIT_OK
from memops.memory.qdrant_points import tenant_selector
from memops.ops.health import HEALTH
from memops.ops.quarantine import QUARANTINE, RELEASE
from memops.quarantine.procedure import qdrant_restore_options, record_restored_routes
from memops.quarantine.qdrant import QUARANTINE_PREFIX, quarantine_collection
from memops.testing import workload as wl

pytestmark = pytest.mark.integration

TENANTS = ("acme", "acme:eu", "[brackets]", wl.NASTY_TENANTS[7])
KINDS = {"episodes": None, "facts": wl.FACT}


@pytest.fixture
def load(client: QdrantClient) -> wl.Workload:
    workload = wl.generate(seed=7007, tenants=TENANTS, items_per_tenant=10)
    for collection, kind in KINDS.items():
        wl.write_qdrant(client, workload, collection, kind=kind)
    return workload


@pytest.fixture
def inventory(tmp_path: Path, standin: RunningStandin, monkeypatch: pytest.MonkeyPatch) -> Path:
    component = {"kind": "qdrant", "url": standin.url, "api_key": standin.api_key}
    deployment = {"qdrant": {"app_collections": list(KINDS)}}
    return scratch_inventory(tmp_path, monkeypatch, {"qdrant": component}, deployment)


def app_view(standin: RunningStandin, tenant: str) -> tuple[int, list[int]]:
    """(tenant's points the app's token finds, statuses of its reads of the other collections)."""
    with QdrantTier(standin.target) as tier:
        everything = tier.collections()
    found, statuses = 0, []
    token = app_token(standin.api_key, list(KINDS))
    with contextlib.closing(QdrantClient(url=standin.url, api_key=token, timeout=10)) as app:
        assert sorted(c.name for c in app.get_collections().collections) == sorted(KINDS)
        for collection in everything:
            try:
                points, _ = app.scroll(collection, tenant_selector(tenant), limit=1000)
                found += len(points)
            except UnexpectedResponse as exc:
                statuses.append(exc.status_code)
    return found, statuses


def contents(standin: RunningStandin) -> dict[str, dict[str, set[str]]]:
    """collection -> tenant -> digests of its points."""
    found: dict[str, dict[str, set[str]]] = {}
    with QdrantTier(standin.target) as tier:
        for collection in tier.collections():
            tenants: dict[str, set[str]] = defaultdict(set)
            for point in tier.scroll(collection):
                tenants[point["payload"]["tenant_id"]].add(point_digest(point))
            found[collection] = dict(tenants)
    return found


def run(
    op: Any, inventory: Path, capsys: pytest.CaptureFixture[str], tenant: str, **raw: Any
) -> tuple[int, dict[str, Any], str]:
    raw = {"namespace": tenant, "tier": "qdrant", "dry_run": False, "yes": True} | raw
    return call(op, inventory, capsys, **raw)


@pytest.mark.parametrize("tenant", ["acme", wl.NASTY_TENANTS[7]])
def test_points_move_out_and_back_exactly(
    standin: RunningStandin,
    client: QdrantClient,
    load: wl.Workload,
    inventory: Path,
    capsys: pytest.CaptureFixture[str],
    tenant: str,
) -> None:
    before = contents(standin)
    assert all(tenant in before[c] for c in KINDS)

    code, document, _ = run(QUARANTINE, inventory, capsys, tenant, dry_run=True)
    assert code == EXIT_OK and contents(standin) == before
    assert document["changes"]["qdrant"]["points"] == {c: len(before[c][tenant]) for c in KINDS}

    code, _, err = run(QUARANTINE, inventory, capsys, tenant)
    assert code == EXIT_OK, err
    during = contents(standin)
    quarantine = sorted(c for c in during if c.startswith(QUARANTINE_PREFIX))
    assert len(quarantine) == len(KINDS)
    for collection in KINDS:
        others = {t: d for t, d in before[collection].items() if t != tenant}
        assert during[collection] == others  # acme:eu's points stay where they were
    moved = [during[q] for q in quarantine]
    assert sorted(moved, key=len) == sorted(({tenant: before[c][tenant]} for c in KINDS), key=len)
    info = client.get_collection(quarantine[0])
    assert "tenant_id" in (info.payload_schema or {})
    assert app_view(standin, tenant) == (0, [403] * len(KINDS))
    # Qdrant cannot scope a token to a tenant: a point the app writes meanwhile lands
    written = models.PointStruct(
        id=str(uuid.uuid4()), vector=[0.5] * wl.DEFAULT_VECTOR_DIM, payload={"tenant_id": tenant}
    )
    token = app_token(standin.api_key, list(KINDS))
    with contextlib.closing(QdrantClient(url=standin.url, api_key=token, timeout=10)) as app:
        app.upsert("episodes", [written])

    code, seen, err = call(HEALTH, inventory, capsys, timeout=5.0, retries=0)
    assert seen["written_during_quarantine"] == {tenant: {"episodes": 1}}, err  # flagged now

    code, document, err = run(RELEASE, inventory, capsys, tenant)
    assert code == EXIT_OK, err
    assert document["changes"]["qdrant"]["arrived_during_quarantine"] == {"episodes": 1}
    assert app_view(standin, tenant) == (
        len(before["episodes"][tenant]) + 1 + len(before["facts"][tenant]),
        [],
    )
    client.delete("episodes", models.PointIdsList(points=[written.id]))
    assert contents(standin) == before


def test_namespace_restores_respect_the_quarantine(
    standin: RunningStandin,
    client: QdrantClient,
    load: wl.Workload,
    inventory: Path,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    """A restore of a quarantined tenant fills its quarantine collections, not the shared ones.

    Otherwise the application would read the restored points, and the release would
    move the old (quarantined) points back over them. A set taken during the
    quarantine restores to the shared collections once the tenant is released.
    """
    tenant, state_dir = "acme", Path(os.environ["MEMOPS_STATE_DIR"])
    before = contents(standin)
    with QdrantTier(standin.target) as tier:
        earlier = tier.backup(tmp_path / "earlier", tenants=[tenant], snapshots=False)
    assert run(QUARANTINE, inventory, capsys, tenant)[0] == EXIT_OK
    quarantined = sorted(c for c in contents(standin) if c.startswith(QUARANTINE_PREFIX))
    client.delete(quarantined[0], models.FilterSelector(filter=tenant_selector(tenant)))
    options = qdrant_restore_options(state_dir, [tenant])
    assert set(options["quarantined"]) == {tenant}
    with QdrantTier(standin.target) as tier:
        during = tier.backup(tmp_path / "during", tenants=[tenant], snapshots=False)
        report = tier.restore(tmp_path / "earlier", earlier, tenants=[tenant], **options)
    record_restored_routes(state_dir, report)
    assert sorted(report["quarantine_routes"][tenant]) == sorted(KINDS)
    assert app_view(standin, tenant) == (0, [403] * len(KINDS))  # still out of reach
    restored = contents(standin)
    for collection in KINDS:
        assert restored[collection] == {t: d for t, d in before[collection].items() if t != tenant}
    assert sorted((restored[q] for q in quarantined), key=len) == sorted(
        ({tenant: before[c][tenant]} for c in KINDS), key=len
    )
    assert run(RELEASE, inventory, capsys, tenant)[0] == EXIT_OK
    assert contents(standin) == before

    # the set taken while quarantined (one collection emptied) holds the points under
    # the quarantine collections' names: they come back to the collections they stand for
    with QdrantTier(standin.target) as tier:
        tier.restore(tmp_path / "during", during, tenants=[tenant])
    after = contents(standin)
    assert not any(c.startswith(QUARANTINE_PREFIX) for c in after)
    emptied = next(c for c in KINDS if quarantine_collection(c, tenant) == quarantined[0])
    assert tenant not in after[emptied]
    assert all(after[c] == before[c] for c in KINDS if c != emptied)
