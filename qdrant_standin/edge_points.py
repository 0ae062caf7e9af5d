"""Points between Qdrant's REST models and qdrant-edge: ids, vectors, selectors, records.

Edge hands out UUID ids as ``uuid.UUID`` and sparse vectors as its own
``SparseVector``; REST wants strings and ``{"indices", "values"}``. Vectors
come back as float32 values widened to float64: ``render.f32`` prints them
the way Qdrant does.

Vectors of COSINE collections are normalised here, in float64, before edge sees
them (as qdrant-client's local mode did). Edge leaves a vector that is already
unit length as it is, so stored vectors are the float64 result rounded once to
float32, and a snapshot restored from them gives back the same bits.
"""

from __future__ import annotations

import uuid
from typing import Any

import numpy as np
import qdrant_edge as edge
from qdrant_client.http import models

from qdrant_standin.protocol import wrong_input
from qdrant_standin.render import f32


def point_id(value: Any) -> int | uuid.UUID:
    """An ExtendedPointId (unsigned int or UUID string) as edge takes it."""
    if isinstance(value, bool):
        raise wrong_input(f"point id {value!r} is neither an unsigned integer nor a UUID")
    if isinstance(value, int):
        if value < 0:
            raise wrong_input(f"point id {value} is negative")
        return value
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise wrong_input(f"point id {value!r} is neither an unsigned integer nor a UUID") from None


def rest_id(value: Any) -> int | str:
    return str(value) if isinstance(value, uuid.UUID) else int(value)


def vector(value: Any) -> Any:
    """A REST vector (dense, multi, sparse, or a dict of named ones) as edge takes it."""
    if isinstance(value, dict):
        return {name: vector(item) for name, item in value.items()}
    if isinstance(value, models.SparseVector):
        return edge.SparseVector(list(value.indices), [float(x) for x in value.values])
    if isinstance(value, list):
        return [vector(item) if isinstance(item, list) else float(item) for item in value]
    raise wrong_input(
        f"{type(value).__name__} vectors need inference, which the stand-in does not have"
    )


def points(
    operation: models.PointsList | models.PointsBatch, cosine: frozenset[str] = frozenset()
) -> list[edge.Point]:
    """The points of an upsert body, in either of its two shapes; the vectors named in
    ``cosine`` (``""`` is the unnamed one) are normalised."""
    if isinstance(operation, models.PointsList):
        return [
            edge.Point(point_id(p.id), _normalised(vector(p.vector), cosine), p.payload)
            for p in operation.points
        ]
    batch = operation.batch
    count = len(batch.ids)
    payloads = batch.payloads if batch.payloads is not None else [None] * count
    if isinstance(batch.vectors, dict):
        named = {name: list(values) for name, values in batch.vectors.items()}
        if any(len(values) != count for values in named.values()):
            raise wrong_input("every batch vector list needs one vector per id")
        vectors: list[Any] = [
            {name: values[i] for name, values in named.items()} for i in range(count)
        ]
    else:
        vectors = list(batch.vectors)
    if len(vectors) != count or len(payloads) != count:
        raise wrong_input("batch ids, vectors and payloads differ in length")
    return [
        edge.Point(point_id(i), _normalised(vector(v), cosine), p)
        for i, v, p in zip(batch.ids, vectors, payloads, strict=True)
    ]


def _normalised(value: Any, cosine: frozenset[str]) -> Any:
    if not cosine:
        return value
    if isinstance(value, dict):
        return {name: _unit(item) if name in cosine else item for name, item in value.items()}
    return _unit(value) if "" in cosine else value


def _unit(value: Any) -> Any:
    """A dense vector (or each vector of a multivector) scaled to length 1; sparse ones as given."""
    if not isinstance(value, list) or not value:
        return value
    if isinstance(value[0], list):
        return [_unit(item) for item in value]
    array = np.asarray(value, dtype=np.float64)
    norm = np.linalg.norm(array)
    return value if norm == 0 else (array / norm).tolist()


def with_payload(value: Any, default: bool) -> Any:
    """WithPayloadInterface -> edge's bool / list of keys / PayloadSelector."""
    if value is None:
        return default
    if isinstance(value, models.PayloadSelectorInclude):
        return edge.PayloadSelector.Include(list(value.include))
    if isinstance(value, models.PayloadSelectorExclude):
        return edge.PayloadSelector.Exclude(list(value.exclude))
    return list(value) if isinstance(value, list) else bool(value)


def with_vector(value: Any, default: bool) -> Any:
    if value is None:
        return default
    return list(value) if isinstance(value, list) else bool(value)


def record(point: Any) -> dict[str, Any]:
    """An edge ``Record`` (or ``ScoredPoint``) as Qdrant's ``Record`` JSON."""
    out: dict[str, Any] = {"id": rest_id(point.id)}
    if point.payload is not None:
        out["payload"] = point.payload
    if point.vector is not None:
        out["vector"] = f32(_rest_vector(point.vector))
    if point.order_value is not None:
        out["order_value"] = point.order_value
    return out


def scored_point(point: Any) -> dict[str, Any]:
    out = record(point)
    out["version"] = point.version
    out["score"] = f32(float(point.score))
    return out


def stored_point(point: Any) -> dict[str, Any]:
    """A record read with payload and vectors as a PointStruct body (for snapshots)."""
    return {
        "id": rest_id(point.id),
        "vector": _rest_vector(point.vector),
        "payload": point.payload or {},
    }


def _rest_vector(value: Any) -> Any:
    if isinstance(value, dict):
        return {name: _rest_vector(item) for name, item in value.items()}
    if isinstance(value, edge.SparseVector):
        return {"indices": list(value.indices), "values": list(value.values)}
    return value
