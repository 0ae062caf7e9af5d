"""Payload indexes per collection, which local mode does not keep: a JSON file next to the data.

Qdrant reports each index in the collection's ``payload_schema``; local mode
filters by brute force and forgets indexes, so the stand-in records the
``field_schema`` given to ``PUT /collections/{name}/index`` itself.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def data_type(field_schema: Any) -> str:
    """The index type of a field_schema: ``"keyword"`` or ``{"type": "keyword", ...}``."""
    return field_schema["type"] if isinstance(field_schema, dict) else str(field_schema)


class PayloadIndexes:
    """field name -> field_schema, per collection; every change rewrites the file atomically."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._data: dict[str, dict[str, Any]] = {}
        if path.exists():
            self._data = json.loads(path.read_text(encoding="utf-8"))

    def fields(self, collection: str) -> dict[str, Any]:
        return dict(self._data.get(collection, {}))

    def set(self, collection: str, field: str, field_schema: Any) -> None:
        self._data.setdefault(collection, {})[field] = field_schema
        self._save()

    def drop(self, collection: str, field: str) -> None:
        if self._data.get(collection, {}).pop(field, None) is not None:
            self._save()

    def drop_collection(self, collection: str) -> None:
        if self._data.pop(collection, None) is not None:
            self._save()

    def _save(self) -> None:
        tmp = self._path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self._data, sort_keys=True), encoding="utf-8")
        os.replace(tmp, self._path)
