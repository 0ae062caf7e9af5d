"""Snapshot files on disk: ``snapshots_path/<collection>/<name>.snapshot`` plus ``.checksum``.

Like Qdrant, each snapshot gets a sibling ``<name>.snapshot.checksum`` file
holding its sha256, and files are written under a temporary name and renamed
when complete, so a listed snapshot is always whole.
"""

from __future__ import annotations

import os
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from qdrant_standin.protocol import bad_request, not_found
from qdrant_standin.snapshot_format import sha256

SUFFIX = ".snapshot"
CHECKSUM_SUFFIX = ".checksum"


class SnapshotDir:
    """The snapshots of every collection under one root directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._lock = threading.Lock()  # two snapshots in one second must not share a name

    def save(self, collection: str, data: bytes) -> dict[str, Any]:
        """Write a new snapshot of ``collection``; returns its SnapshotDescription."""
        directory = self._collection_dir(collection)
        directory.mkdir(parents=True, exist_ok=True)
        with self._lock:
            path = self._new_path(directory, collection)
            checksum = sha256(data)
            _write_atomically(path.with_name(path.name + CHECKSUM_SUFFIX), checksum.encode())
            _write_atomically(path, data)
        return self._describe(path)

    def list_snapshots(self, collection: str) -> list[dict[str, Any]]:
        directory = self._collection_dir(collection)
        if not directory.is_dir():
            return []
        return [self._describe(path) for path in sorted(directory.glob(f"*{SUFFIX}"))]

    def path(self, collection: str, snapshot_name: str) -> Path:
        """The file of an existing snapshot, or 404."""
        if (
            "/" in snapshot_name
            or snapshot_name.startswith(".")
            or not snapshot_name.endswith(SUFFIX)
        ):
            raise bad_request(f"invalid snapshot name {snapshot_name!r}")
        path = self._collection_dir(collection) / snapshot_name
        if not path.is_file():
            raise not_found(f"Snapshot {snapshot_name} not found")
        return path

    def delete(self, collection: str, snapshot_name: str) -> None:
        path = self.path(collection, snapshot_name)
        path.unlink()
        path.with_name(path.name + CHECKSUM_SUFFIX).unlink(missing_ok=True)

    def local_file(self, location: Path) -> Path:
        """A ``file://`` recovery location, allowed only inside the snapshots directory."""
        resolved = location.resolve()
        if not resolved.is_relative_to(self.root.resolve()):
            raise bad_request(f"snapshot file {location} is outside the snapshots directory")
        if not resolved.is_file():
            raise not_found(f"Snapshot file {location} not found")
        return resolved

    def _collection_dir(self, collection: str) -> Path:
        directory = self.root / collection
        if not directory.resolve().is_relative_to(self.root.resolve()) or collection in ("", "."):
            raise bad_request(f"invalid collection name {collection!r}")
        return directory

    @staticmethod
    def _new_path(directory: Path, collection: str) -> Path:
        stamp = datetime.now(UTC).strftime("%Y-%m-%d-%H-%M-%S")
        path = directory / f"{collection}-standin-{stamp}{SUFFIX}"
        counter = 1
        while path.exists():
            path = directory / f"{collection}-standin-{stamp}-{counter}{SUFFIX}"
            counter += 1
        return path

    @staticmethod
    def _describe(path: Path) -> dict[str, Any]:
        stat = path.stat()
        checksum_file = path.with_name(path.name + CHECKSUM_SUFFIX)
        try:
            checksum = checksum_file.read_text(encoding="ascii").strip()
        except OSError:
            checksum = sha256(path.read_bytes())
        created = datetime.fromtimestamp(stat.st_mtime, UTC)
        return {
            "name": path.name,
            "creation_time": created.strftime("%Y-%m-%dT%H:%M:%S"),
            "size": stat.st_size,
            "checksum": checksum,
        }


def _write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
