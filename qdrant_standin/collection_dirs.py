"""Collections on disk under ``storage_path``, one directory each, as Qdrant lays them out::

    collections/<name>/standin-collection.json   the REST config (vectors, metadata)
    collections/<name>/0/                        shard 0: qdrant-edge's segments and WAL

A collection is built complete in a hidden staging directory and renamed into
place, and removed by renaming it aside first, so a crash never leaves a
half-made collection that passes for a whole one. Leftovers of either kind are
swept at start.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

from qdrant_standin.protocol import wrong_input

COLLECTIONS = "collections"
CONFIG_FILE = "standin-collection.json"
SHARD_DIR = "0"
STAGING_PREFIX = ".staging-"
TRASH_PREFIX = ".trash-"
MAX_NAME_BYTES = 255
FORBIDDEN_CHARS = set('<>:"/\\|?*\0')


def check_name(name: str) -> None:
    """Qdrant's rules for collection names; a leading dot is refused too (hidden directories
    belong to the stand-in)."""
    bad = sorted({char for char in name if char in FORBIDDEN_CHARS or ord(char) < 0x20})
    if not name or name.startswith(".") or len(name.encode()) > MAX_NAME_BYTES or bad:
        raise wrong_input(
            f"collection name {name!r} is not allowed: it must be 1 to {MAX_NAME_BYTES} bytes, "
            "not start with '.', and not contain < > : \" / \\ | ? * or control characters"
        )


class CollectionDirs:
    """The ``collections/`` directory of one storage path."""

    def __init__(self, storage_path: Path) -> None:
        self.root = storage_path / COLLECTIONS
        self.root.mkdir(parents=True, exist_ok=True)
        for leftover in self.root.iterdir():
            if leftover.name.startswith((STAGING_PREFIX, TRASH_PREFIX)):
                shutil.rmtree(leftover, ignore_errors=True)

    def names(self) -> list[str]:
        """Complete collections: a directory with its config file."""
        return sorted(
            path.name
            for path in self.root.iterdir()
            if not path.name.startswith(".") and (path / CONFIG_FILE).is_file()
        )

    def config(self, name: str) -> dict[str, Any]:
        return json.loads((self.root / name / CONFIG_FILE).read_text(encoding="utf-8"))

    def shard_path(self, name: str) -> Path:
        return self.root / name / SHARD_DIR

    def new_staging(self, config: dict[str, Any]) -> Path:
        """An empty staging directory holding ``config``; its shard goes in ``SHARD_DIR``."""
        staging = self.root / f"{STAGING_PREFIX}{uuid.uuid4().hex}"
        staging.mkdir()
        tmp = staging / f".{CONFIG_FILE}.tmp"
        tmp.write_text(json.dumps(config, sort_keys=True), encoding="utf-8")
        os.replace(tmp, staging / CONFIG_FILE)
        return staging

    def install(self, staging: Path, name: str) -> None:
        """Put a complete staging directory in place of collection ``name`` (if any); when
        the rename fails, the old collection is put back."""
        path = self.root / name
        trash = self._set_aside(path)
        try:
            os.replace(staging, path)
        except OSError:
            if trash is not None:
                os.replace(trash, path)
            raise
        if trash is not None:
            shutil.rmtree(trash)

    def remove(self, name: str) -> None:
        trash = self._set_aside(self.root / name)
        if trash is not None:
            shutil.rmtree(trash)

    def _set_aside(self, path: Path) -> Path | None:
        """Rename ``path`` to a trash name (swept at start if never deleted)."""
        if not path.exists():
            return None
        trash = self.root / f"{TRASH_PREFIX}{uuid.uuid4().hex}"
        os.replace(path, trash)
        return trash

    def discard(self, staging: Path) -> None:
        shutil.rmtree(staging, ignore_errors=True)
