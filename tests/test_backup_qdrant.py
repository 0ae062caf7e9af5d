"""The Qdrant tier of a backup against the Qdrant stand-in: snapshots and logical exports."""

from __future__ import annotations

from pathlib import Path

import pytest
from qdrant_client import QdrantClient, models
from standin_server import RunningStandin

from memops.backup.artifacts import BackupError, TierArtifact
from memops.backup.qdrant.tier import QdrantTier, collection_stem, read_export
from memops.testing import workload as wl

pytestmark = pytest.mark.filterwarnings("ignore:Api key is used with an insecure connection")

KINDS = ("chat", "fact")
COLLECTIONS = tuple(f"memory_{kind}" for kind in KINDS)


@pytest.fixture
def load() -> wl.Workload:
    return wl.generate(seed=909, tenants=2, items_per_tenant=6)


def _fill(client: QdrantClient, load: wl.Workload) -> None:
    for kind in KINDS:
        wl.write_qdrant(client, load, f"memory_{kind}", kind=kind)


def _everything(client: QdrantClient, load: wl.Workload) -> dict[str, dict]:
    return {
        c.name: wl.read_qdrant(client, c.name, load.tenants)
        for c in client.get_collections().collections
    }


def test_full_round_trip_through_snapshots(
    standin: RunningStandin, client: QdrantClient, load: wl.Workload, tmp_path: Path
) -> None:
    _fill(client, load)
    before = _everything(client, load)
    with QdrantTier(standin.target) as tier:
        artifact = tier.backup(tmp_path)
        assert sorted(artifact.files) == sorted(
            f"qdrant/memory_{k}.{suffix}"
            for k in KINDS
            for suffix in ("points.jsonl.gz", "snapshot")
        )
        # the set keeps the snapshot; the server's copy is deleted
        assert client.list_snapshots("memory_chat") == []
        artifact = TierArtifact.from_dict(artifact.to_dict())  # as read back from a manifest
        for collection in list(before):
            client.delete_collection(collection)
        report = tier.restore(tmp_path, artifact)
        assert set(report["collections"].values()) == {"snapshot"}
        assert _everything(client, load) == before
        assert tier.tenant_summaries() == artifact.tenants
    for kind in KINDS:
        assert wl.verify_qdrant(client, load, f"memory_{kind}", kind=kind) == []


def test_export_restores_across_versions_with_its_indexes(
    standin: RunningStandin, client: QdrantClient, load: wl.Workload, tmp_path: Path
) -> None:
    _fill(client, load)
    before = _everything(client, load)
    with QdrantTier(standin.target) as tier:
        artifact = tier.backup(tmp_path)
        for collection in list(before):
            client.delete_collection(collection)
        report = tier.restore(tmp_path, artifact, use_snapshots=False)
    assert set(report["collections"].values()) == {"export"}
    assert _everything(client, load) == before
    schema = client.get_collection("memory_chat").payload_schema
    assert schema["tenant_id"].data_type == models.PayloadSchemaType.KEYWORD


def test_tenant_restore_touches_only_that_tenant(
    standin: RunningStandin, client: QdrantClient, tmp_path: Path
) -> None:
    tenants = ("acme", "acme:eu", "glob*star", "[brackets]", "'; DROP TABLE x; --")
    load = wl.generate(seed=77, tenants=tenants, items_per_tenant=8)
    _fill(client, load)
    with QdrantTier(standin.target) as tier:
        artifact = tier.backup(tmp_path, tenants=["acme"])
        assert set(artifact.tenants) == {"acme"}
        _header, points = read_export(tmp_path / "qdrant" / "memory_chat.points.jsonl.gz")
        assert {p["payload"]["tenant_id"] for p in points} <= {"acme"}
        # damage every tenant: acme comes back from the set, the others stay as damaged
        for collection in COLLECTIONS:
            client.delete(
                collection,
                points_selector=models.FilterSelector(filter=models.Filter(must=[])),
                wait=True,
            )
        wl.write_qdrant(client, wl.generate(seed=78, tenants=tenants), "memory_chat", kind="chat")
        others = [t for t in tenants if t != "acme"]
        before_others = {c: wl.read_qdrant(client, c, others) for c in COLLECTIONS}
        tier.restore(tmp_path, artifact, tenants=["acme"])
        after_others = {c: wl.read_qdrant(client, c, others) for c in COLLECTIONS}
        assert after_others == before_others
        assert tier.tenant_summaries(tenants=["acme"]) == artifact.tenants
    acme = {p.id for p in load.qdrant if p.payload["tenant_id"] == "acme" and p.kind in KINDS}
    restored = {i for c in COLLECTIONS for i in wl.read_qdrant(client, c, ["acme"])}
    assert restored == acme


def test_restore_into_scratch_collections_leaves_the_live_ones(
    standin: RunningStandin, client: QdrantClient, load: wl.Workload, tmp_path: Path
) -> None:
    _fill(client, load)
    before = _everything(client, load)
    with QdrantTier(standin.target) as tier:
        artifact = tier.backup(tmp_path)
        rename = {c: f"drill_{c}" for c in before}
        tier.restore(tmp_path, artifact, rename=rename)
        scratch = tier.tenant_summaries(collections=sorted(rename.values()))
    assert scratch == artifact.tenants
    assert _everything(client, load) == {**before, **{rename[c]: v for c, v in before.items()}}


def test_a_flipped_byte_in_a_snapshot_is_refused_by_the_server(
    standin: RunningStandin, client: QdrantClient, load: wl.Workload, tmp_path: Path
) -> None:
    _fill(client, load)
    with QdrantTier(standin.target) as tier:
        artifact = tier.backup(tmp_path)
        snapshot = tmp_path / "qdrant" / "memory_chat.snapshot"
        data = bytearray(snapshot.read_bytes())
        data[len(data) // 2] ^= 0x01
        snapshot.write_bytes(bytes(data))
        before = _everything(client, load)
        with pytest.raises(BackupError, match="memory_chat"):
            tier.restore(tmp_path, artifact)
    assert _everything(client, load)["memory_chat"] == before["memory_chat"]


def test_odd_collection_names_never_become_paths() -> None:
    assert collection_stem("memory_chat") == "memory_chat"
    assert collection_stem("../etc/passwd").startswith("c-")
    assert "/" not in collection_stem("a/b")
