"""The stand-in's snapshot file: a gzipped tar of a collection's config, indexes and points.

Real Qdrant collection snapshots hold the collection's config and its shards'
segment files. qdrant-edge can apply a server's shard snapshot but cannot write
one, so the format is the stand-in's own, and logical::

    manifest.json         format, collection, counts, sha256 of the two data files
    manifest.json.sha256  sha256 of manifest.json
    collection.json       {"config": CreateCollection body, "payload_schema": {...}}
    points.jsonl          one PointStruct body per line

Every byte that matters is covered by a checksum (and gzip's CRC covers the
rest), so a corrupted file is refused instead of half restored.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
import time
import zlib
from typing import Any

from qdrant_standin import VERSION
from qdrant_standin.storage import CollectionDump

FORMAT = "qdrant-standin-snapshot"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
MANIFEST_SUM = "manifest.json.sha256"
CONFIG = "collection.json"
POINTS = "points.jsonl"
MEMBERS = (MANIFEST, MANIFEST_SUM, CONFIG, POINTS)


class SnapshotError(Exception):
    """The bytes are not a complete, intact stand-in snapshot."""


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def pack(collection: str, dump: CollectionDump) -> bytes:
    """Serialise ``dump`` into snapshot bytes."""
    config = _json({"config": dump.config, "payload_schema": dump.payload_schema})
    points = b"".join(_json(point) + b"\n" for point in dump.points)
    manifest = _json(
        {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "collection": collection,
            "points_count": len(dump.points),
            "created_by": f"qdrant_standin {VERSION}",
            "files": {CONFIG: sha256(config), POINTS: sha256(points)},
        }
    )
    members = {
        MANIFEST: manifest,
        MANIFEST_SUM: sha256(manifest).encode() + b"\n",
        CONFIG: config,
        POINTS: points,
    }
    now = int(time.time())
    tar_buffer = io.BytesIO()
    with tarfile.open(fileobj=tar_buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in MEMBERS:
            info = tarfile.TarInfo(name)
            info.size = len(members[name])
            info.mtime = now
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(members[name]))
    return gzip.compress(tar_buffer.getvalue(), mtime=now)


def unpack(data: bytes) -> tuple[dict[str, Any], CollectionDump]:
    """Check and read snapshot bytes: ``(manifest, dump)``, or SnapshotError."""
    members = _read_members(data)
    manifest_bytes = members[MANIFEST]
    if members[MANIFEST_SUM].strip().decode("ascii", "replace") != sha256(manifest_bytes):
        raise SnapshotError("manifest checksum mismatch")
    manifest = _load(manifest_bytes, MANIFEST)
    if manifest.get("format") != FORMAT or manifest.get("format_version") != FORMAT_VERSION:
        raise SnapshotError(f"unsupported snapshot format {manifest.get('format')!r}")
    for name in (CONFIG, POINTS):
        if manifest.get("files", {}).get(name) != sha256(members[name]):
            raise SnapshotError(f"checksum mismatch in {name}")
    config = _load(members[CONFIG], CONFIG)
    points = [_load(line, POINTS) for line in members[POINTS].splitlines() if line.strip()]
    if len(points) != manifest.get("points_count"):
        raise SnapshotError("point count does not match the manifest")
    dump = CollectionDump(config.get("config", {}), config.get("payload_schema", {}), points)
    return manifest, dump


def _read_members(data: bytes) -> dict[str, bytes]:
    try:
        raw = gzip.decompress(data)  # checks gzip's CRC over the whole archive
        members: dict[str, bytes] = {}
        with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as tar:
            for member in tar:
                if member.name not in MEMBERS or not member.isfile() or member.name in members:
                    raise SnapshotError(f"unexpected archive member {member.name!r}")
                extracted = tar.extractfile(member)
                assert extracted is not None  # regular files always have content
                members[member.name] = extracted.read()
    except (OSError, EOFError, zlib.error, tarfile.TarError) as exc:
        raise SnapshotError(f"not a readable snapshot archive ({exc})") from None
    missing = [name for name in MEMBERS if name not in members]
    if missing:
        raise SnapshotError(f"archive lacks {', '.join(missing)}")
    return members


def _json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


def _load(data: bytes, name: str) -> Any:
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise SnapshotError(f"{name} is not valid JSON ({exc})") from None
