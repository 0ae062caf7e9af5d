"""Integration fixtures: the test stack, deployed for real by `invoke deploy`."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from integration_helpers import TEST_INVENTORY, DeployedStack, invoke

from memops.deploy.inventory import resolve_inventory


@pytest.fixture(scope="session")
def deployed_stack() -> Iterator[DeployedStack]:
    run = invoke("deploy", "--inventory", TEST_INVENTORY, "--json")
    assert run.returncode == 0, f"deploy failed: {run.stderr.strip()}\n{run.stdout[-3000:]}"
    document = run.json()
    assert document["ok"] is True
    yield DeployedStack(resolve_inventory(TEST_INVENTORY).state_dir, document)
