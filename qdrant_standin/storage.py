"""The data: one qdrant-edge shard per collection, behind one lock.

Edge embeds Qdrant's engine, so searches, filters, payload indexes and the
segment format are Qdrant's own; every update goes through edge's write-ahead
log before it returns, so it survives a crash, and ``close`` flushes the
segments. Edge keeps no collection-level REST config (the vectors config as
given, ``metadata``), so each collection directory holds that next to its shard
(see ``collection_dirs``). The HTTP server is threaded and a shard is one
mutable object, so every call into edge holds ``Store._lock``.
"""

from __future__ import annotations

import functools
import itertools
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import qdrant_edge as edge
from pydantic import ValidationError
from qdrant_client.http import models

from qdrant_standin import render
from qdrant_standin.collection_dirs import SHARD_DIR, CollectionDirs, check_name
from qdrant_standin.edge_filters import edge_filter
from qdrant_standin.edge_points import (
    point_id,
    points,
    record,
    rest_id,
    scored_point,
    stored_point,
    with_payload,
    with_vector,
)
from qdrant_standin.edge_queries import count_request, query_request, scroll_request
from qdrant_standin.edge_schema import edge_config, field_schema, index_schema, payload_schema_entry
from qdrant_standin.protocol import ApiError, not_found, wrong_input

LOG = logging.getLogger("qdrant_standin.storage")
RESTORE_BATCH = 256
EXPORT_PAGE = 1024
LEGACY_MARKER = "meta.json"  # what qdrant-client's local mode (the old stand-in) left behind
UPDATE_MODES = {
    models.UpdateMode.UPSERT: edge.UpdateMode.Upsert,
    models.UpdateMode.INSERT_ONLY: edge.UpdateMode.InsertOnly,
    models.UpdateMode.UPDATE_ONLY: edge.UpdateMode.UpdateOnly,
}
# edge's errors are plain Exceptions; these starts of a message mean the server failed
SERVER_FAULTS = ("Service internal error", "Service runtime error", "IO error", "I/O error")

P = ParamSpec("P")
R = TypeVar("R")


@dataclass
class CollectionDump:
    """A whole collection as JSON values: what a snapshot holds."""

    config: dict[str, Any]  # a CreateCollection body: vectors, sparse_vectors, metadata
    payload_schema: dict[str, Any]  # field name -> field_schema as given to PUT .../index
    points: list[dict[str, Any]]  # PointStruct bodies: id, vector, payload


@dataclass
class Collection:
    config: dict[str, Any]  # the CreateCollection body, as stored next to the shard
    shard: edge.EdgeShard

    @property
    def cosine(self) -> frozenset[str]:
        """Names of the COSINE dense vectors (``""`` for the unnamed one)."""
        vectors = self.config.get("vectors") or {}
        named = {"": vectors} if "size" in vectors else vectors
        return frozenset(name for name, params in named.items() if params["distance"] == "Cosine")


def _locked(method: Callable[P, R]) -> Callable[P, R]:
    @functools.wraps(method)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        store = args[0]
        assert isinstance(store, Store)
        with store._lock, edge_errors():
            return method(*args, **kwargs)

    return wrapper


@contextmanager
def edge_errors() -> Iterator[None]:
    """Bad input (from edge or from validation) as Qdrant's 400; edge's own failures as 500."""
    try:
        yield
    except ApiError:
        raise
    except (ValueError, ValidationError) as exc:
        raise wrong_input(" ".join(str(exc).split()) or type(exc).__name__) from None
    except Exception as exc:
        if type(exc) is not Exception:  # not from edge: a bug, reported as a 500 by the app
            raise
        message = " ".join(str(exc).split())
        if message.startswith(SERVER_FAULTS):
            raise ApiError(500, f"Service internal error: {message}") from None
        raise wrong_input(message.removeprefix("Wrong input: ")) from None


class Store:
    """Collections and points of one storage directory."""

    def __init__(self, storage_path: Path) -> None:
        storage_path.mkdir(parents=True, exist_ok=True)
        if (storage_path / LEGACY_MARKER).exists():
            LOG.warning(
                "%s holds qdrant-client local-mode data from an older stand-in, which this one "
                "does not read: restore its collections from snapshots",
                storage_path,
            )
        self._lock = threading.RLock()
        self._dirs = CollectionDirs(storage_path)
        self._collections: dict[str, Collection] = {}
        self._operation_ids = itertools.count()
        for name in self._dirs.names():
            try:
                self._open(name)
            except Exception as exc:
                self.close()
                raise RuntimeError(f"cannot load collection {name}: {exc}") from exc

    def close(self) -> None:
        """Flush and close every shard: the segments on disk are complete after this."""
        with self._lock:
            for collection in self._collections.values():
                collection.shard.close()
            self._collections.clear()

    # collections

    @_locked
    def names(self) -> list[str]:
        return sorted(self._collections)

    @_locked
    def exists(self, name: str) -> bool:
        return name in self._collections

    @_locked
    def info(self, name: str) -> dict[str, Any]:
        collection = self._get(name)
        shard_info = collection.shard.info()
        schema = {
            field: payload_schema_entry(index) for field, index in shard_info.payload_schema.items()
        }
        return render.collection_info(
            collection.config,
            points_count=collection.shard.count(edge.CountRequest(exact=True)),
            indexed_vectors_count=shard_info.indexed_vectors_count,
            segments_count=shard_info.segments_count,
            payload_schema=schema,
        )

    @_locked
    def create(self, name: str, config: models.CreateCollection) -> None:
        if name in self._collections:
            raise ApiError(409, f"Wrong input: Collection `{name}` already exists!")
        check_name(name)
        self._build(name, config, lambda shard: None)

    @_locked
    def delete(self, name: str) -> bool:
        collection = self._collections.pop(name, None)
        if collection is None:
            return False
        collection.shard.close()
        self._dirs.remove(name)
        return True

    @_locked
    def vector_total(self) -> int:
        """Vectors in all collections: points times vector names (for ``/metrics``)."""
        total = 0
        for collection in self._collections.values():
            vectors = collection.config.get("vectors") or {}
            names = 1 if "size" in vectors else len(vectors)
            names += len(collection.config.get("sparse_vectors") or {})
            total += collection.shard.count(edge.CountRequest(exact=True)) * names
        return total

    # payload indexes

    @_locked
    def set_index(self, name: str, field: str, field_schema: Any) -> int:
        shard = self._get(name).shard
        shard.update(edge.UpdateOperation.create_field_index(field, index_schema(field_schema)))
        return next(self._operation_ids)

    @_locked
    def drop_index(self, name: str, field: str) -> int:
        self._get(name).shard.update(edge.UpdateOperation.delete_field_index(field))
        return next(self._operation_ids)

    # points

    @_locked
    def upsert(self, name: str, operation: models.PointsList | models.PointsBatch) -> int:
        collection = self._get(name)
        mode = UPDATE_MODES.get(operation.update_mode) if operation.update_mode else None
        condition = edge_filter(operation.update_filter)
        update = edge.UpdateOperation.upsert_points(
            points(operation, collection.cosine), condition, mode
        )
        collection.shard.update(update)
        return next(self._operation_ids)

    @_locked
    def delete_points(
        self, name: str, selector: models.PointIdsList | models.FilterSelector
    ) -> int:
        shard = self._get(name).shard
        if isinstance(selector, models.PointIdsList):
            ids = [point_id(item) for item in selector.points]
            shard.update(edge.UpdateOperation.delete_points(ids))
        else:
            shard.update(edge.UpdateOperation.delete_points_by_filter(edge_filter(selector.filter)))
        return next(self._operation_ids)

    @_locked
    def retrieve(
        self, name: str, ids: list[Any], payload: Any = True, vectors: Any = False
    ) -> list[dict[str, Any]]:
        shard = self._get(name).shard
        found = shard.retrieve(
            [point_id(item) for item in ids],
            with_payload(payload, True),
            with_vector(vectors, False),
        )
        return [record(point) for point in found]

    @_locked
    def scroll(self, name: str, request: models.ScrollRequest) -> dict[str, Any]:
        found, next_offset = self._get(name).shard.scroll(scroll_request(request))
        return {
            "points": [record(point) for point in found],
            "next_page_offset": rest_id(next_offset) if next_offset is not None else None,
        }

    @_locked
    def count(self, name: str, request: models.CountRequest) -> dict[str, Any]:
        return {"count": self._get(name).shard.count(count_request(request))}

    @_locked
    def query(self, name: str, request: models.QueryRequest) -> list[dict[str, Any]]:
        shard = self._get(name).shard
        found = shard.query(query_request(request, functools.partial(_stored_vector, shard)))
        return [scored_point(point) for point in found]

    # whole collections, for snapshots

    @_locked
    def export(self, name: str) -> CollectionDump:
        collection = self._get(name)
        shard = collection.shard
        schema = {
            field: field_schema(index) for field, index in shard.info().payload_schema.items()
        }
        exported: list[dict[str, Any]] = []
        offset = None
        while True:
            page, offset = shard.scroll(
                edge.ScrollRequest(
                    offset=offset, limit=EXPORT_PAGE, with_payload=True, with_vector=True
                )
            )
            exported += [stored_point(point) for point in page]
            if offset is None:
                return CollectionDump(dict(collection.config), schema, exported)

    def restore(self, name: str, dump: CollectionDump) -> None:
        """Replace collection ``name`` with ``dump``. The new collection is built aside and
        swapped in only when complete: on any error the old one is left as it was."""
        with edge_errors():
            check_name(name)
            config = models.CreateCollection.model_validate(dump.config)
            listed = models.PointsList(
                points=[models.PointStruct.model_validate(point) for point in dump.points]
            )
            edge_points = points(listed)  # COSINE vectors were stored normalised already
            schemas = {field: index_schema(value) for field, value in dump.payload_schema.items()}

        def fill(shard: edge.EdgeShard) -> None:
            for field, schema in schemas.items():
                shard.update(edge.UpdateOperation.create_field_index(field, schema))
            for start in range(0, len(edge_points), RESTORE_BATCH):
                batch = edge_points[start : start + RESTORE_BATCH]
                shard.update(edge.UpdateOperation.upsert_points(batch))
            shard.optimize()  # bulk-loaded: let Qdrant's optimizers settle the segments now

        with self._lock, edge_errors():
            self._build(name, config, fill)

    # helpers

    def _get(self, name: str) -> Collection:
        collection = self._collections.get(name)
        if collection is None:
            raise not_found(f"Collection `{name}` doesn't exist!")
        return collection

    def _open(self, name: str) -> None:
        shard = edge.EdgeShard.load(str(self._dirs.shard_path(name)))
        self._collections[name] = Collection(self._dirs.config(name), shard)

    def _build(
        self, name: str, config: models.CreateCollection, fill: Callable[[edge.EdgeShard], None]
    ) -> None:
        """Make collection ``name`` in a staging directory, then swap it in (caller locks)."""
        shard_config = edge_config(config)  # invalid configs fail before anything is written
        staging = self._dirs.new_staging(_config_body(config))
        try:
            shard = edge.EdgeShard.create(str(staging / SHARD_DIR), shard_config)
            try:
                fill(shard)
            finally:
                shard.close()
        except BaseException:
            self._dirs.discard(staging)
            raise
        old = self._collections.pop(name, None)
        if old is not None:
            old.shard.close()  # edge owns its directory while open: close before the swap
        try:
            self._dirs.install(staging, name)
        except OSError:
            self._dirs.discard(staging)
            if old is not None:
                self._open(name)
            raise
        self._open(name)


def _stored_vector(shard: edge.EdgeShard, stored_id: Any, using: str | None) -> Any:
    """The vector ``using`` of a stored point, for queries by point id."""
    found = shard.retrieve([stored_id], False, [using] if using else True)
    if not found:
        raise not_found(f"No point with id {stored_id} found")
    value = found[0].vector
    if isinstance(value, dict):
        value = value.get(using or "")
    if value is None:
        raise wrong_input(f"point {stored_id} has no vector {using or '(default)'!r}")
    return value


def _config_body(config: models.CreateCollection) -> dict[str, Any]:
    """The parts of a CreateCollection body that collection info reports back."""
    body: dict[str, Any] = {"vectors": render.dump(config.vectors) or {}}
    if config.sparse_vectors:
        body["sparse_vectors"] = render.dump(config.sparse_vectors)
    if config.metadata is not None:
        body["metadata"] = config.metadata
    return body
