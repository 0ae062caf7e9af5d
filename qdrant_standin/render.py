"""The JSON bodies real Qdrant sends: collection info, and floats as float32.

Qdrant stores vectors and computes scores as 32-bit floats and prints them in
their shortest form (``0.1``, not ``0.10000000149011612``); qdrant-edge hands out
the float32 values widened to float64, so they are narrowed back here.
"""

from __future__ import annotations

from typing import Any

import numpy as np

# Qdrant's defaults, reported for every collection (the stand-in does not take these knobs)
HNSW_CONFIG = {
    "m": 16,
    "ef_construct": 100,
    "full_scan_threshold": 10000,
    "max_indexing_threads": 0,
}
OPTIMIZER_CONFIG = {
    "deleted_threshold": 0.2,
    "vacuum_min_vector_number": 1000,
    "default_segment_number": 0,
    "max_segment_size": None,
    "memmap_threshold": None,
    "indexing_threshold": 10000,
    "flush_interval_sec": 5,
    "max_optimization_threads": None,
}
WAL_CONFIG = {"wal_capacity_mb": 32, "wal_segments_ahead": 0}


def f32(value: Any) -> Any:
    """Round floats (also inside vectors, multivectors and sparse values) to float32."""
    if isinstance(value, float):
        return float(str(np.float32(value)))
    if isinstance(value, list):
        return [f32(item) for item in value]
    if isinstance(value, dict):
        return {key: item if key == "indices" else f32(item) for key, item in value.items()}
    return value


def dump(model: Any) -> Any:
    """A model (or a dict/list of them) as JSON values, without unset optional fields."""
    if isinstance(model, dict):
        return {key: dump(value) for key, value in model.items()}
    if isinstance(model, list):
        return [dump(value) for value in model]
    if hasattr(model, "model_dump"):
        return model.model_dump(mode="json", exclude_none=True)
    return model


def collection_info(
    config: dict[str, Any],
    *,
    points_count: int,
    indexed_vectors_count: int,
    segments_count: int,
    payload_schema: dict[str, Any],
) -> dict[str, Any]:
    """``CollectionInfo`` with every field the OpenAPI document requires, typed as it says.

    ``config`` is the collection's stored REST config; the counts come from its shard.
    """
    out_params: dict[str, Any] = {
        "vectors": config.get("vectors") or {},
        "shard_number": 1,
        "replication_factor": 1,
        "write_consistency_factor": 1,
        "on_disk_payload": True,
    }
    if config.get("sparse_vectors"):
        out_params["sparse_vectors"] = config["sparse_vectors"]
    out_config: dict[str, Any] = {
        "params": out_params,
        "hnsw_config": dict(HNSW_CONFIG),
        "optimizer_config": dict(OPTIMIZER_CONFIG),
        "wal_config": dict(WAL_CONFIG),
        "quantization_config": None,
    }
    if config.get("metadata") is not None:
        out_config["metadata"] = config["metadata"]
    return {
        "status": "green",
        "optimizer_status": "ok",
        "indexed_vectors_count": indexed_vectors_count,
        "points_count": points_count,
        "segments_count": segments_count,
        "config": out_config,
        "payload_schema": payload_schema,
    }
