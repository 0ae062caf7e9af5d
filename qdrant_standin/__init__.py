"""A stand-in for the Qdrant server: the REST subset memops uses, on Qdrant's engine (qdrant-edge).

Real Qdrant cannot be installed on offline test machines, so this package serves
health, collections, points, search, snapshots and ``/metrics`` with Qdrant's own
paths, request and response bodies, config file and command line
(``python -m qdrant_standin --config-path config.yaml``). Storage is qdrant-edge-py,
which embeds Qdrant's engine: searches, filters, payload indexes and the segment
format are Qdrant's. The rest is the stand-in's own: one process, one lock, one
shard per collection, and a snapshot format of its own (edge cannot write Qdrant's).
Requests are parsed with qdrant-client's models.

Modules: ``cli`` (flags, exit codes, signals), ``config`` (YAML + ``QDRANT__*``),
``server`` (HTTP), ``app`` (API key, routing, envelope), ``router``, ``protocol``
(requests, responses, errors), ``*_api`` (handlers per area), ``storage`` (the
shards behind a lock), ``collection_dirs`` (their directories), ``edge_schema``,
``edge_filters``, ``edge_points``, ``edge_queries`` (REST models -> edge's),
``render`` (Qdrant JSON), ``snapshots`` and ``snapshot_format`` (files and their
format), ``multipart``, ``metrics``.
"""

from importlib import metadata

try:
    # qdrant-client warns when the server is more than one minor version away from it,
    # so the stand-in reports the version of the client whose REST models it speaks.
    VERSION = metadata.version("qdrant-client")
except metadata.PackageNotFoundError:  # pragma: no cover - requirements.txt installs it
    VERSION = "0.0.0"

TITLE = "qdrant - vector search engine"
COMMIT = "memops-standin"
