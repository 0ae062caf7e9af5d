"""A stand-in for the Qdrant server: the REST subset memops uses, on qdrant-client's local mode.

Real Qdrant cannot be installed on offline test machines, so this package serves
health, collections, points, search, snapshots and ``/metrics`` with Qdrant's own
paths, request and response bodies, config file and command line
(``python -m qdrant_standin --config-path config.yaml``). It is a test double,
not a database: one process, one lock, exact (brute-force) search.

Modules: ``cli`` (flags, exit codes, signals), ``config`` (YAML + ``QDRANT__*``),
``server`` (HTTP), ``app`` (API key, routing, envelope), ``router``, ``protocol``
(requests, responses, errors), ``*_api`` (handlers per area), ``storage`` (local
mode behind a lock), ``payload_indexes``, ``render`` (models -> Qdrant JSON),
``snapshots`` and ``snapshot_format`` (files and their format), ``multipart``,
``metrics``.
"""

from importlib import metadata

try:
    # qdrant-client warns when the server is more than one minor version away from it,
    # so the stand-in reports the version of the client whose local mode it runs on.
    VERSION = metadata.version("qdrant-client")
except metadata.PackageNotFoundError:  # pragma: no cover - requirements.txt installs it
    VERSION = "0.0.0"

TITLE = "qdrant - vector search engine"
COMMIT = "memops-standin"
