"""The data: qdrant-client's local mode behind one lock, plus the payload indexes it ignores.

Local mode is not thread safe and the HTTP server is threaded, so every call
into the client holds ``Store._lock``. Local mode has no payload indexes (it
filters by brute force); the stand-in records them in a JSON file next to the
data so collection info reports them the way Qdrant does.
"""

from __future__ import annotations

import functools
import itertools
import threading
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from pydantic import TypeAdapter, ValidationError
from pydantic_core import to_jsonable_python
from qdrant_client import QdrantClient
from qdrant_client.http import models

from qdrant_standin import render
from qdrant_standin.payload_indexes import PayloadIndexes, data_type
from qdrant_standin.protocol import ApiError, not_found, wrong_input

INDEX_FILE = "standin-payload-indexes.json"
RESTORE_BATCH = 256

P = ParamSpec("P")
R = TypeVar("R")


@dataclass
class CollectionDump:
    """A whole collection as JSON values: what a snapshot holds."""

    config: dict[str, Any]  # a CreateCollection body: vectors, sparse_vectors, metadata
    payload_schema: dict[str, Any]  # field name -> field_schema as given to PUT .../index
    points: list[dict[str, Any]]  # PointStruct bodies: id, vector, payload


def _locked(method: Callable[P, R]) -> Callable[P, R]:
    @functools.wraps(method)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        store = args[0]
        assert isinstance(store, Store)
        with store._lock, _client_errors():
            return method(*args, **kwargs)

    return wrapper


@contextmanager
def _client_errors() -> Iterator[None]:
    """Local mode reports bad input as ValueError: answer it as Qdrant does, with a 400."""
    try:
        yield
    except (ValueError, ValidationError, AssertionError) as exc:
        message = " ".join(str(exc).removeprefix("Wrong input: ").split()) or type(exc).__name__
        raise wrong_input(message) from None


class Store:
    """Collections and points of one storage directory."""

    def __init__(self, storage_path: Path) -> None:
        storage_path.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._client = QdrantClient(path=str(storage_path), force_disable_check_same_thread=True)
        self._indexes = PayloadIndexes(storage_path / INDEX_FILE)
        self._operation_ids = itertools.count()

    def close(self) -> None:
        """Close the local client: its SQLite files are complete after this."""
        with self._lock:
            self._client.close()

    # collections

    @_locked
    def names(self) -> list[str]:
        return [item.name for item in self._client.get_collections().collections]

    @_locked
    def exists(self, name: str) -> bool:
        return self._client.collection_exists(name)

    @_locked
    def info(self, name: str) -> dict[str, Any]:
        self._require(name)
        schema = {}
        for field, field_schema in self._indexes.fields(name).items():
            entry: dict[str, Any] = {"data_type": data_type(field_schema)}
            if isinstance(field_schema, dict):
                entry["params"] = field_schema
            entry["points"] = self._count_with_field(name, field)
            schema[field] = entry
        return render.collection_info(self._client.get_collection(name), schema)

    @_locked
    def create(self, name: str, config: models.CreateCollection) -> None:
        if self._client.collection_exists(name):
            raise ApiError(409, f"Wrong input: Collection `{name}` already exists!")
        self._client.create_collection(
            name,
            vectors_config=config.vectors,
            sparse_vectors_config=config.sparse_vectors,
            metadata=config.metadata,
        )
        self._indexes.drop_collection(name)

    @_locked
    def delete(self, name: str) -> bool:
        self._indexes.drop_collection(name)
        return self._client.delete_collection(name)

    @_locked
    def vector_total(self) -> int:
        """Vectors in all collections: points times vector names (for ``/metrics``)."""
        total = 0
        for name in self.names():
            info = self._client.get_collection(name)
            vectors = info.config.params.vectors
            names = 1 if isinstance(vectors, models.VectorParams) else len(vectors or {})
            names += len(info.config.params.sparse_vectors or {})
            total += (info.points_count or 0) * names
        return total

    # payload indexes

    @_locked
    def set_index(self, name: str, field: str, field_schema: Any) -> int:
        self._require(name)
        parsed = TypeAdapter(models.PayloadFieldSchema).validate_python(field_schema)
        with warnings.catch_warnings():
            # "payload indexes have no effect in local mode": the stand-in records them itself
            warnings.simplefilter("ignore")
            self._client.create_payload_index(name, field, field_schema=parsed)
        self._indexes.set(name, field, field_schema)
        return next(self._operation_ids)

    @_locked
    def drop_index(self, name: str, field: str) -> int:
        self._require(name)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self._client.delete_payload_index(name, field)
        self._indexes.drop(name, field)
        return next(self._operation_ids)

    # points

    @_locked
    def upsert(self, name: str, operation: models.PointsList | models.PointsBatch) -> int:
        self._require(name)
        points = operation.points if isinstance(operation, models.PointsList) else operation.batch
        self._client.upsert(
            name,
            points=points,
            update_filter=operation.update_filter,
            update_mode=operation.update_mode,
        )
        return next(self._operation_ids)

    @_locked
    def delete_points(
        self, name: str, selector: models.PointIdsList | models.FilterSelector
    ) -> int:
        self._require(name)
        self._client.delete(name, points_selector=selector)
        return next(self._operation_ids)

    @_locked
    def retrieve(
        self, name: str, ids: list[Any], with_payload: Any = True, with_vector: Any = False
    ) -> list[dict[str, Any]]:
        self._require(name)
        points = self._client.retrieve(
            name, ids, with_payload=with_payload, with_vectors=with_vector
        )
        return [render.record(point) for point in points]

    @_locked
    def scroll(self, name: str, request: models.ScrollRequest) -> dict[str, Any]:
        self._require(name)
        points, next_offset = self._client.scroll(
            name,
            scroll_filter=request.filter,
            limit=request.limit if request.limit is not None else 10,
            order_by=request.order_by,
            offset=request.offset,
            with_payload=request.with_payload if request.with_payload is not None else True,
            with_vectors=request.with_vector if request.with_vector is not None else False,
        )
        return {
            "points": [render.record(point) for point in points],
            "next_page_offset": render.dump(next_offset),
        }

    @_locked
    def count(self, name: str, request: models.CountRequest) -> dict[str, Any]:
        self._require(name)
        result = self._client.count(name, count_filter=request.filter, exact=True)
        return {"count": result.count}

    @_locked
    def query(self, name: str, request: models.QueryRequest) -> list[dict[str, Any]]:
        self._require(name)
        response = self._client.query_points(
            name,
            query=request.query,
            using=request.using,
            prefetch=request.prefetch,
            query_filter=request.filter,
            search_params=request.params,
            limit=request.limit if request.limit is not None else 10,
            offset=request.offset,
            with_payload=request.with_payload if request.with_payload is not None else False,
            with_vectors=request.with_vector if request.with_vector is not None else False,
            score_threshold=request.score_threshold,
            lookup_from=request.lookup_from,
        )
        return [render.scored_point(point) for point in response.points]

    # whole collections, for snapshots

    @_locked
    def export(self, name: str) -> CollectionDump:
        self._require(name)
        params = self._client.get_collection(name).config
        config = {
            "vectors": render.dump(params.params.vectors) or {},
            "sparse_vectors": render.dump(params.params.sparse_vectors),
            "metadata": params.metadata,
        }
        points = [
            {
                "id": point.id,
                "vector": to_jsonable_python(point.vector),
                "payload": point.payload,
            }
            for point in self._stored_points(name)
        ]
        return CollectionDump(config, self._indexes.fields(name), points)

    def restore(self, name: str, dump: CollectionDump) -> None:
        """Replace collection ``name`` with ``dump``, fully validated before anything is dropped."""
        with _client_errors():
            config = models.CreateCollection.model_validate(dump.config)
            points = [models.PointStruct.model_validate(point) for point in dump.points]
            schema_adapter = TypeAdapter(models.PayloadFieldSchema)
            for field_schema in dump.payload_schema.values():
                schema_adapter.validate_python(field_schema)
        with self._lock:
            self.delete(name)
            try:
                self.create(name, config)
                for start in range(0, len(points), RESTORE_BATCH):
                    batch = points[start : start + RESTORE_BATCH]
                    self.upsert(name, models.PointsList(points=batch))
                for field, field_schema in dump.payload_schema.items():
                    self.set_index(name, field, field_schema)
            except Exception as exc:
                # a half-restored collection would pass for the snapshot's data: drop it
                self.delete(name)
                if isinstance(exc, ApiError):
                    raise
                raise ApiError(500, f"Service internal error: restore failed: {exc}") from exc

    # helpers

    def _require(self, name: str) -> None:
        if not self._client.collection_exists(name):
            raise not_found(f"Collection `{name}` doesn't exist!")

    def _count_with_field(self, name: str, field: str) -> int:
        has_field = models.Filter(
            must_not=[models.IsEmptyCondition(is_empty=models.PayloadField(key=field))]
        )
        return self._client.count(name, count_filter=has_field, exact=True).count

    def _stored_points(self, name: str) -> list[models.PointStruct]:
        """The points as local mode persisted them, oldest write first.

        Snapshots need the vectors as written: ``scroll`` returns cosine vectors
        already normalised, and normalising them again on restore can move their
        last bit. Local mode reloads these same records on start, so they are
        the collection. This reads qdrant-client internals, which is why
        requirements.txt pins its version.
        """
        collection = self._client._client.collections[name]
        if collection.storage is None:
            raise ApiError(500, "Service internal error: collection has no persistent storage")
        return list(reversed(list(collection.storage.load())))
