"""rebuild.quarantine / rebuild.release on the Qdrant tier, against the Qdrant stand-in.

What these tests prove: quarantine moves exactly the tenant's points (ids, vectors,
payloads) out of every memory collection into memops-quarantine-* collections (with
the source's vectors config and tenant index), leaving every other tenant's points
(acme:eu next to acme, hostile names) as they were; release puts back exactly the
same points and drops the quarantine collections; a dry run moves nothing.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from op_calls import call, scratch_inventory
from qdrant_client import QdrantClient
from standin_server import RunningStandin

from memops import workload as wl
from memops.backup.qdrant_tier import QdrantTier, point_digest
from memops.exitcodes import EXIT_OK
from memops.ops.rebuild_quarantine import QUARANTINE, RELEASE
from memops.rebuild.qdrant_quarantine import QUARANTINE_PREFIX

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
    return scratch_inventory(tmp_path, monkeypatch, {"qdrant": component})


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

    code, _, err = run(RELEASE, inventory, capsys, tenant)
    assert code == EXIT_OK, err
    assert contents(standin) == before
