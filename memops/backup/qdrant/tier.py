"""Qdrant tier: collection snapshots through the API, plus a portable logical export.

Snapshots restore a whole collection fast but only onto the same Qdrant minor
version and never one tenant; the logical export (every point's id, vector and
payload, scrolled through the API) restores one tenant's points by payload filter
and restores across versions. A full backup takes both; a namespace backup takes
the export of those tenants only.

Files in the staging directory, per collection (``stem`` = ``collection_stem``):
``qdrant/<stem>.snapshot`` (full backups) and ``qdrant/<stem>.points.jsonl.gz``:
a header line (collection name, vector parameters, payload indexes) then one
JSON line per point, sorted by id.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import re
import shutil
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from memops.backup.artifacts import (
    BackupError,
    RestoreRefused,
    ScratchCopy,
    TenantSummary,
    TierArtifact,
    scratch_name,
)
from memops.clients import qdrant_client, qdrant_http
from memops.deploy.targets import QdrantTarget
from memops.memory.qdrant_points import scroll_pages
from memops.model import (
    NAMESPACE_FIELD,
    is_quarantine_collection,
    quarantine_collection,
    source_collection,
)
from memops.progress import meter

TIER = "qdrant"
EXPORT_FORMAT = 1
SCROLL_BATCH = 256
UPSERT_BATCH = 256
SNAPSHOT_POLL_S = 0.2
SNAPSHOT_TIMEOUT_S = 600
# A snapshot needs room for about twice the collection while it is being made.
SNAPSHOT_SPACE_FACTOR = 2
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def collection_stem(name: str) -> str:
    """A file-name-safe stem for a collection (odd names are hashed, never used as paths)."""
    if _SAFE_NAME.match(name):
        return name
    return "c-" + hashlib.sha256(name.encode("utf-8")).hexdigest()[:24]


def point_digest(point: dict[str, Any]) -> str:
    """sha256 of one point's id, vector and payload in canonical JSON."""
    text = json.dumps(
        {"id": point["id"], "vector": point["vector"], "payload": point["payload"]},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass
class _TenantTally:
    """Order-independent checksum: sha256 over the sorted digests of a tenant's points."""

    digests: list[str] = field(default_factory=list)

    def summary(self) -> TenantSummary:
        joined = "".join(sorted(self.digests)).encode("ascii")
        return TenantSummary(len(self.digests), hashlib.sha256(joined).hexdigest())


def summarize(points: Iterable[dict[str, Any]]) -> dict[str, TenantSummary]:
    tallies: dict[str, _TenantTally] = {}
    for point in points:
        tenant = str((point.get("payload") or {}).get(NAMESPACE_FIELD, ""))
        tallies.setdefault(tenant, _TenantTally()).digests.append(point_digest(point))
    return {tenant: tally.summary() for tenant, tally in tallies.items()}


def merge_summaries(parts: Iterable[dict[str, TenantSummary]]) -> dict[str, TenantSummary]:
    """Per-tenant totals over several collections (checksums combined in name order)."""
    merged: dict[str, list[TenantSummary]] = {}
    for part in parts:
        for tenant, summary in part.items():
            merged.setdefault(tenant, []).append(summary)
    result = {}
    for tenant, summaries in merged.items():
        combined = hashlib.sha256("".join(s.checksum for s in summaries).encode("ascii"))
        result[tenant] = TenantSummary(sum(s.count for s in summaries), combined.hexdigest())
    return result


class QdrantTier:
    """Backup and restore of one Qdrant server's collections."""

    def __init__(self, target: QdrantTarget, *, timeout_s: float = 30.0) -> None:
        self.target = target
        self.timeout_s = timeout_s
        self.client = qdrant_client(target, timeout_s=timeout_s)
        self.http = qdrant_http(target, timeout_s=timeout_s)

    def close(self) -> None:
        self.client.close()
        self.http.close()

    def __enter__(self) -> QdrantTier:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ reading

    def server_version(self) -> str:
        return str(self._json("GET", "/").get("version", "unknown"))

    def collections(self) -> list[str]:
        return sorted(c.name for c in self.client.get_collections().collections)

    def scroll(self, collection: str, tenants: Sequence[str] | None = None) -> Iterator[dict]:
        """Every point of ``collection`` (of ``tenants`` only, when given), with vectors."""
        from qdrant_client import models

        scroll_filter = None
        if tenants is not None:
            scroll_filter = models.Filter(
                must=[
                    models.FieldCondition(
                        key=NAMESPACE_FIELD, match=models.MatchAny(any=list(tenants))
                    )
                ]
            )
        with meter().count(f"qdrant {collection}", "points") as counter:
            for records in scroll_pages(self.client, collection, scroll_filter, page=SCROLL_BATCH):
                for record in records:
                    yield {
                        "id": record.id,
                        "vector": record.vector,
                        "payload": dict(record.payload or {}),
                    }
                counter.advance(len(records))

    def tenant_summaries(
        self, collections: Sequence[str] | None = None, tenants: Sequence[str] | None = None
    ) -> dict[str, TenantSummary]:
        """What the live collections hold, in the shape the artifact records."""
        names = self.collections() if collections is None else collections
        return merge_summaries(summarize(self.scroll(name, tenants)) for name in names)

    # ------------------------------------------------------------------- backup

    def backup(
        self,
        staging: Path,
        *,
        tenants: Sequence[str] | None = None,
        snapshots: bool = True,
    ) -> TierArtifact:
        """Export every collection (and snapshot it when the backup is full)."""
        (staging / TIER).mkdir(parents=True, exist_ok=True)
        files: list[str] = []
        parts: list[dict[str, TenantSummary]] = []
        snapshot_names: dict[str, str] = {}
        checksums: dict[str, str] = {}
        collections = self.collections()
        for name in collections:
            stem = collection_stem(name)
            export = f"{TIER}/{stem}.points.jsonl.gz"
            info = self._json("GET", f"/collections/{quote(name, safe='')}")
            parts.append(self._export(name, info, staging / export, tenants))
            files.append(export)
            if tenants is None and snapshots:
                snapshot = f"{TIER}/{stem}.snapshot"
                snapshot_names[name], checksums[name] = self._snapshot(
                    name, info, staging / snapshot
                )
                files.append(snapshot)
        summaries = merge_summaries(parts)
        if tenants is not None:
            summaries = {t: summaries.get(t, TenantSummary(0, _EMPTY_CHECKSUM)) for t in tenants}
        return TierArtifact(
            tier=TIER,
            files=tuple(files),
            tenants=summaries,
            versions={"qdrant": self.server_version()},
            positions={"snapshots": snapshot_names},
            scope="full" if tenants is None else "namespaces",
            extra={
                "collections": {collection_stem(n): n for n in collections},
                "snapshot_sha256": checksums,
            },
        )

    def _export(
        self, collection: str, info: dict[str, Any], path: Path, tenants: Sequence[str] | None
    ) -> dict[str, TenantSummary]:
        header = {
            "format": EXPORT_FORMAT,
            "collection": collection,
            "vectors": info["config"]["params"]["vectors"],
            "payload_schema": {
                key: value.get("data_type")
                for key, value in (info.get("payload_schema") or {}).items()
            },
        }
        points = sorted(self.scroll(collection, tenants), key=lambda p: str(p["id"]))
        tmp = path.with_name(f".{path.name}.tmp")
        with gzip.open(tmp, "wt", encoding="utf-8", compresslevel=6) as out:
            out.write(json.dumps(header, sort_keys=True) + "\n")
            for point in points:
                out.write(json.dumps(point, sort_keys=True, ensure_ascii=False) + "\n")
        tmp.replace(path)
        return summarize(points)

    def _snapshot(self, collection: str, info: dict[str, Any], path: Path) -> tuple[str, str]:
        """Create a snapshot (wait=false, then poll), download it, check its sha256."""
        base = f"/collections/{quote(collection, safe='')}/snapshots"
        self._check_space(collection, info, path.parent)
        before = {s["name"] for s in self._json("GET", base)}
        self._json("POST", base, params={"wait": "false"}, accept_empty=True)
        deadline = time.monotonic() + SNAPSHOT_TIMEOUT_S
        while True:
            new = [s for s in self._json("GET", base) if s["name"] not in before]
            if new:
                description = max(new, key=lambda s: s.get("creation_time") or "")
                break
            if time.monotonic() > deadline:
                raise BackupError(f"qdrant: snapshot of {collection!r} did not appear in time")
            time.sleep(SNAPSHOT_POLL_S)
        name = description["name"]
        digest = self._download(f"{base}/{quote(name, safe='')}", path)
        expected = description.get("checksum")
        if expected and expected != digest:
            raise BackupError(
                f"qdrant: snapshot {name} of {collection!r} downloaded with sha256 {digest}, "
                f"the server reports {expected}"
            )
        # The set holds the snapshot now; the server's copy would only fill its disk.
        self._json("DELETE", f"{base}/{quote(name, safe='')}", accept_empty=True)
        return name, digest

    def _check_space(self, collection: str, info: dict[str, Any], directory: Path) -> None:
        params = info["config"]["params"]["vectors"]
        dim = int(params.get("size", 0)) if isinstance(params, dict) else 0
        estimate = int(info.get("points_count") or 0) * (dim * 4 + 512)
        free = shutil.disk_usage(directory).free
        if free < SNAPSHOT_SPACE_FACTOR * estimate:
            raise BackupError(
                f"qdrant: not enough free disk in {directory} for a snapshot of {collection!r}: "
                f"{free} bytes free, about {SNAPSHOT_SPACE_FACTOR * estimate} needed"
            )

    def _download(self, path: str, dest: Path) -> str:
        digest = hashlib.sha256()
        tmp = dest.with_name(f".{dest.name}.tmp")
        try:
            with self.http.stream("GET", path) as response, open(tmp, "wb") as out:
                if response.status_code != 200:
                    raise BackupError(f"qdrant: GET {path} returned HTTP {response.status_code}")
                for chunk in response.iter_bytes(1 << 20):
                    digest.update(chunk)
                    out.write(chunk)
        except httpx.HTTPError as exc:
            tmp.unlink(missing_ok=True)
            raise BackupError(f"qdrant: downloading {path} failed: {exc}") from None
        tmp.replace(dest)
        return digest.hexdigest()

    # ------------------------------------------------------------------ restore

    def restore(
        self,
        staging: Path,
        artifact: TierArtifact,
        *,
        tenants: Sequence[str] | None = None,
        rename: dict[str, str] | None = None,
        use_snapshots: bool = True,
        quarantined: Mapping[str, Mapping[str, str]] | None = None,
    ) -> dict[str, Any]:
        """Restore every collection of the set, or only ``tenants``' points.

        ``rename`` maps a collection of the set to the name to restore it as (the
        drill restores into scratch collections). A whole collection comes back
        from its snapshot when the set has one and the server runs the same minor
        version; otherwise from the logical export. ``quarantined``: the restored
        tenants that are quarantined now, with their recorded moves (see
        ``_restore_tenants``).
        """
        rename = rename or {}
        if tenants is not None:
            return self._restore_tenants(staging, artifact, tenants, rename, quarantined or {})
        report: dict[str, Any] = {"collections": {}}
        same_minor = _minor(artifact.versions.get("qdrant", "")) == _minor(self.server_version())
        for stem, collection in sorted(artifact.extra.get("collections", {}).items()):
            dest = rename.get(collection, collection)
            snapshot = staging / TIER / f"{stem}.snapshot"
            if tenants is None and use_snapshots and same_minor and snapshot.is_file():
                sha = artifact.extra.get("snapshot_sha256", {}).get(collection)
                self._upload_snapshot(dest, snapshot, sha)
                report["collections"][dest] = "snapshot"
                continue
            header, points = read_export(staging / TIER / f"{stem}.points.jsonl.gz")
            self._recreate(dest, header)
            self._upsert(dest, points)
            report["collections"][dest] = "export"
        return report

    def _restore_tenants(
        self,
        staging: Path,
        artifact: TierArtifact,
        tenants: Sequence[str],
        rename: dict[str, str],
        quarantined: Mapping[str, Mapping[str, str]],
    ) -> dict[str, Any]:
        """Replace the tenants' points with the set's, collection by collection.

        A quarantined tenant's points go to its quarantine collections (the recorded
        move of each collection, else the one named for it), never to the shared
        ones the application reads; its points in the shared ones (written by the
        application during the quarantine) go too. A set taken during a quarantine
        holds the points under the quarantine collection's name: they are restored
        to the collection it stands for. The report's ``quarantine_routes`` lists
        the quarantine collections written, for the quarantine record.
        """
        sets = dict(sorted(artifact.extra.get("collections", {}).items()))
        candidates = {*sets.values(), *self.collections()}
        headers: dict[str, dict[str, Any]] = {}
        writes: dict[str, list[dict[str, Any]]] = {}
        clears: dict[str, set[str]] = {}
        routes: dict[str, dict[str, str]] = {}
        for stem, collection in sets.items():
            header, points = read_export(staging / TIER / f"{stem}.points.jsonl.gz")
            for tenant in tenants:
                source = source_collection(collection, tenant, candidates)
                if source is None:
                    continue  # another tenant's quarantine collection
                dest = rename.get(source, source)
                if tenant in quarantined:
                    clears.setdefault(dest, set()).add(tenant)
                    dest = quarantined[tenant].get(source) or quarantine_collection(source, tenant)
                    routes.setdefault(tenant, {})[source] = dest
                headers.setdefault(dest, header)
                clears.setdefault(dest, set()).add(tenant)
                mine = [p for p in points if p["payload"].get(NAMESPACE_FIELD) == tenant]
                writes.setdefault(dest, []).extend(mine)
        report: dict[str, Any] = {"collections": {}}
        for dest in sorted(clears):
            if not self.client.collection_exists(dest):
                # a set's memory collection comes back even when empty; a quarantine
                # collection only to hold points; a shared one left behind is not made
                wanted = writes.get(dest) or not is_quarantine_collection(dest)
                if dest not in headers or not wanted:
                    continue
                self._recreate(dest, headers[dest])
            self._delete_tenants(dest, sorted(clears[dest]))
            self._upsert(dest, writes.get(dest, []))
            report["collections"][dest] = "export (tenants)"
        # Only the quarantine collections that hold the tenant's points now go on record.
        routes = {
            tenant: kept
            for tenant, moved in routes.items()
            if (kept := {s: d for s, d in moved.items() if d in report["collections"]})
        }
        if routes:
            report["quarantine_routes"] = routes
        return report

    def after_verified_set(self, artifact: TierArtifact) -> dict[str, Any]:
        """Nothing of an earlier restore waits for the next set."""
        return {}

    @contextlib.contextmanager
    def scratch_restore(self, staging: Path, artifact: TierArtifact) -> Iterator[ScratchCopy]:
        """The set's collections restored under scratch names (the drill); dropped afterwards."""
        originals = sorted(artifact.extra.get("collections", {}).values())
        rename = {name: scratch_name(name) for name in originals}
        try:
            started = time.monotonic()
            self.restore(staging, artifact, rename=rename)
            seconds = time.monotonic() - started
            scratch = [rename[name] for name in originals]
            points = [
                (str(p["id"]), str(p["payload"].get(NAMESPACE_FIELD, "")))
                for name in scratch
                for p in self.scroll(name)
            ]
            yield ScratchCopy(self.tenant_summaries(collections=scratch), seconds, points=points)
        finally:
            for name in rename.values():
                with contextlib.suppress(Exception):
                    self.client.delete_collection(name)

    def _upload_snapshot(self, collection: str, snapshot: Path, sha256: str | None) -> None:
        # priority=snapshot: Qdrant's default priority can leave a recovered collection empty.
        params = {"priority": "snapshot", "wait": "true"}
        if sha256:
            params["checksum"] = sha256
        path = f"/collections/{quote(collection, safe='')}/snapshots/upload"
        with open(snapshot, "rb") as handle:
            files = {"snapshot": (snapshot.name, handle, "application/octet-stream")}
            response = self.http.post(path, params=params, files=files, timeout=SNAPSHOT_TIMEOUT_S)
        if response.status_code != 200:
            raise BackupError(
                f"qdrant: recovering {collection!r} from its snapshot returned HTTP "
                f"{response.status_code}: {response.text[:200]}"
            )

    def _recreate(self, collection: str, header: dict[str, Any]) -> None:
        from qdrant_client import models

        vectors = header["vectors"]
        if not (isinstance(vectors, dict) and "size" in vectors):
            raise RestoreRefused(f"qdrant: {collection!r} uses named vectors, not supported yet")
        if self.client.collection_exists(collection):
            self.client.delete_collection(collection)
        self.client.create_collection(
            collection,
            vectors_config=models.VectorParams(
                size=int(vectors["size"]), distance=models.Distance(vectors["distance"])
            ),
        )
        for key, data_type in sorted(header.get("payload_schema", {}).items()):
            if data_type:
                self.client.create_payload_index(
                    collection, key, models.PayloadSchemaType(data_type)
                )

    def _delete_tenants(self, collection: str, tenants: Sequence[str]) -> None:
        from qdrant_client import models

        for tenant in tenants:  # MatchValue: the name is a literal, never a pattern
            self.client.delete(
                collection,
                points_selector=models.FilterSelector(
                    filter=models.Filter(
                        must=[
                            models.FieldCondition(
                                key=NAMESPACE_FIELD, match=models.MatchValue(value=tenant)
                            )
                        ]
                    )
                ),
                wait=True,
            )

    def _upsert(self, collection: str, points: Iterable[dict[str, Any]]) -> int:
        from qdrant_client import models

        batch: list[models.PointStruct] = []
        with meter().count(f"qdrant restore {collection}", "points") as counter:
            for point in points:
                batch.append(models.PointStruct(**point))
                if len(batch) >= UPSERT_BATCH:
                    self.client.upsert(collection, points=batch, wait=True)
                    counter.advance(len(batch))
                    batch = []
            if batch:
                self.client.upsert(collection, points=batch, wait=True)
                counter.advance(len(batch))
        return counter.completed

    # ------------------------------------------------------------------ helpers

    def _json(
        self, method: str, path: str, *, params: dict[str, str] | None = None, accept_empty=False
    ) -> Any:
        try:
            response = self.http.request(method, path, params=params)
        except httpx.HTTPError as exc:
            raise BackupError(f"qdrant: {method} {path} failed: {exc}") from None
        if response.status_code not in (200, 202):
            raise BackupError(
                f"qdrant: {method} {path} returned HTTP {response.status_code}: "
                f"{response.text[:200]}"
            )
        body = response.json()
        if path == "/":
            return body
        result = body.get("result")
        if result is None and not accept_empty:
            raise BackupError(f"qdrant: {method} {path} returned no result")
        return result


_EMPTY_CHECKSUM = hashlib.sha256(b"").hexdigest()


def read_export(path: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The header and points of a logical export file."""
    try:
        with gzip.open(path, "rt", encoding="utf-8") as handle:
            header = json.loads(handle.readline())
            points = [json.loads(line) for line in handle if line.strip()]
    except (OSError, EOFError, ValueError) as exc:
        raise BackupError(f"qdrant: cannot read export {path.name}: {exc}") from None
    if header.get("format") != EXPORT_FORMAT:
        raise RestoreRefused(f"qdrant: {path.name}: unknown export format {header.get('format')}")
    return header, points


def _minor(version: str) -> str:
    return ".".join(version.split(".")[:2])
