"""Collection configs and payload index schemas: Qdrant's REST models <-> qdrant-edge's.

A collection's REST config (``CreateCollection``) becomes an ``EdgeConfig``; a
``field_schema`` given to ``PUT .../index`` becomes an edge schema type or index
params object, and what the shard reports back becomes the ``payload_schema``
entry Qdrant sends (``data_type``, ``params`` when params were given, ``points``).
Options the stand-in does not map (HNSW, quantization, optimizers, WAL...) are
accepted and ignored, as the local-mode stand-in did.
"""

from __future__ import annotations

from typing import Any

import qdrant_edge as edge
from pydantic import TypeAdapter
from qdrant_client.http import models

from qdrant_standin.protocol import wrong_input

DATATYPES = {
    models.Datatype.FLOAT32: edge.VectorStorageDatatype.Float32,
    models.Datatype.FLOAT16: edge.VectorStorageDatatype.Float16,
    models.Datatype.UINT8: edge.VectorStorageDatatype.Uint8,
}
# field_schema "type" -> (edge schema type, edge params class)
INDEX_TYPES: dict[str, tuple[Any, type]] = {
    "keyword": (edge.PayloadSchemaType.Keyword, edge.KeywordIndexParams),
    "integer": (edge.PayloadSchemaType.Integer, edge.IntegerIndexParams),
    "float": (edge.PayloadSchemaType.Float, edge.FloatIndexParams),
    "geo": (edge.PayloadSchemaType.Geo, edge.GeoIndexParams),
    "text": (edge.PayloadSchemaType.Text, edge.TextIndexParams),
    "bool": (edge.PayloadSchemaType.Bool, edge.BoolIndexParams),
    "datetime": (edge.PayloadSchemaType.Datetime, edge.DatetimeIndexParams),
    "uuid": (edge.PayloadSchemaType.Uuid, edge.UuidIndexParams),
}
# index params whose values are edge enums, by REST name -> edge enum
PARAM_ENUMS: dict[str, type] = {
    "tokenizer": edge.TokenizerType,
    "memory": edge.Memory,
}
_FIELD_SCHEMA = TypeAdapter(models.PayloadFieldSchema)


def edge_config(config: models.CreateCollection) -> edge.EdgeConfig:
    """The shard config of a new collection."""
    vectors = config.vectors
    dense: edge.EdgeVectorParams | dict[str, edge.EdgeVectorParams] | None
    if isinstance(vectors, models.VectorParams):
        dense = _dense(vectors)
    else:
        dense = {name: _dense(params) for name, params in (vectors or {}).items()} or None
    sparse = {name: _sparse(params) for name, params in (config.sparse_vectors or {}).items()}
    if dense is None and not sparse:
        raise wrong_input("a collection needs at least one dense or sparse vector")
    return edge.EdgeConfig(vectors=dense, sparse_vectors=sparse or None)


def _dense(params: models.VectorParams) -> edge.EdgeVectorParams:
    multivector = None
    if params.multivector_config is not None:
        multivector = edge.MultiVectorConfig(edge.MultiVectorComparator.MaxSim)
    return edge.EdgeVectorParams(
        size=params.size,
        distance=getattr(edge.Distance, params.distance.value),
        on_disk=params.on_disk,
        multivector_config=multivector,
        datatype=DATATYPES.get(params.datatype) if params.datatype else None,
    )


def _sparse(params: models.SparseVectorParams) -> edge.EdgeSparseVectorParams:
    index = params.index
    modifier = edge.Modifier.Idf if params.modifier == models.Modifier.IDF else None
    return edge.EdgeSparseVectorParams(
        full_scan_threshold=index.full_scan_threshold if index else None,
        on_disk=index.on_disk if index else None,
        modifier=modifier,
        datatype=DATATYPES.get(index.datatype) if index and index.datatype else None,
    )


def index_schema(field_schema: Any) -> Any:
    """``"keyword"`` or ``{"type": "integer", "range": true}`` -> what edge's
    ``create_field_index`` takes: a schema type, or an index params object."""
    _FIELD_SCHEMA.validate_python(field_schema)  # Qdrant's own rules first
    if isinstance(field_schema, str):
        return INDEX_TYPES[field_schema][0]
    _, params_class = INDEX_TYPES[field_schema["type"]]
    options = {}
    for key, value in field_schema.items():
        if key == "type" or value is None:
            continue
        if key in PARAM_ENUMS:
            value = _enum_member(PARAM_ENUMS[key], value, key)
        elif not isinstance(value, bool | int | float | str):
            raise wrong_input(f"payload index option {key!r} is not supported by the stand-in")
        options[key] = value
    try:
        return params_class(**options)
    except TypeError:
        raise wrong_input(
            f"payload index options {sorted(options)} are not all supported for "
            f"{field_schema['type']!r} indexes by the stand-in"
        ) from None


def payload_schema_entry(info: Any) -> dict[str, Any]:
    """A shard's ``PayloadIndexInfo`` as Qdrant's ``PayloadIndexInfo`` JSON."""
    data_type = enum_name(info.data_type)
    entry: dict[str, Any] = {"data_type": data_type}
    if info.params is not None:
        entry["params"] = index_params(data_type, info.params)
    entry["points"] = info.points
    return entry


def field_schema(info: Any) -> Any:
    """The ``field_schema`` that recreates an index (what a snapshot keeps)."""
    data_type = enum_name(info.data_type)
    return data_type if info.params is None else index_params(data_type, info.params)


def index_params(data_type: str, params: Any) -> dict[str, Any]:
    """Edge index params as REST JSON: the type plus every option that was set."""
    out: dict[str, Any] = {"type": data_type}
    for name in sorted(dir(params)):
        if name.startswith("_"):
            continue
        value = getattr(params, name)
        if value is None or callable(value):
            continue
        out[name] = value if isinstance(value, bool | int | float | str) else enum_name(value)
    return out


def enum_name(value: Any) -> str:
    """``TokenizerType.Word`` -> ``"word"``: edge's enums are not Python Enums (no ``.name``)."""
    return repr(value).rsplit(".", 1)[-1].lower()


def _enum_member(kind: type, value: Any, key: str) -> Any:
    for name in dir(kind):
        member = getattr(kind, name)
        if not name.startswith("_") and isinstance(member, kind) and name.lower() == str(value):
            return member
    raise wrong_input(f"unknown {key} {value!r}")
