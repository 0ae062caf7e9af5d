"""Fixtures shared by every test suite."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from qdrant_client import QdrantClient
from standin_server import RunningStandin, running_standin
from three_tiers import (  # noqa: F401  (fixtures of the scratch stack of all three tiers)
    tier_stack,
    tiers_cluster,
    tiers_load,
    tiers_redis_server,
    tiers_ring,
)

from memops.clients import qdrant_client

VENV_BIN = Path(sys.executable).parent


def checker_tool(name: str) -> str:
    """promtool or amtool: ./bootstrap.sh unpacks them into .venv/bin from Debian's packages."""
    found = shutil.which(name) or shutil.which(name, path=str(VENV_BIN))
    if found is None:
        pytest.fail(f"{name} not found: run ./bootstrap.sh (it unpacks it into .venv/bin)")
    return found


@pytest.fixture(scope="session")
def promtool() -> str:
    return checker_tool("promtool")


@pytest.fixture(scope="session")
def amtool() -> str:
    return checker_tool("amtool")


# A Qdrant stand-in process per test module, and a client to it that starts from no
# collections (the backup tests of the Qdrant tier and of the backup tasks share them).
@pytest.fixture(scope="module")
def standin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStandin]:
    with running_standin(tmp_path_factory.mktemp("qdrant")) as server:
        yield server


@pytest.fixture
def client(standin: RunningStandin) -> Iterator[QdrantClient]:
    qdrant = qdrant_client(standin.target)
    for collection in qdrant.get_collections().collections:
        qdrant.delete_collection(collection.name)
    yield qdrant
    qdrant.close()
