"""Backup tasks run on the backup host through playbooks/backup.yml and restore.yml.

MEMOPS_BACKUP_HOST=localhost (as ``backup_host`` in an inventory would) makes
`invoke backup.*` run the operation on that host through its playbook; here the
host is this machine, so the round trip can be checked against the deployed stack.
"""

from __future__ import annotations

from typing import Any

import pytest
from integration_helpers import TEST_INVENTORY, DeployedStack, invoke

from memops.testing import workload as wl

pytestmark = pytest.mark.integration

TENANT = "on-host*[t]"
ON_HOST = {"MEMOPS_BACKUP_HOST": "localhost"}


def backup(*args: str) -> Any:
    return invoke(
        "backup." + args[0], *args[1:], "--inventory", TEST_INVENTORY, "--json", env=ON_HOST
    )


def rows(stack: DeployedStack) -> list[Any]:
    with stack.clients.postgresql() as conn:
        return wl.read_postgres(conn, [TENANT])


def test_a_namespace_round_trip_runs_on_the_backup_host(deployed_stack: DeployedStack) -> None:
    data = wl.generate(seed=3838, tenants=[TENANT], items_per_tenant=6)
    with deployed_stack.clients.postgresql() as conn:
        conn.execute("DELETE FROM memory_items WHERE tenant_id = %s", [TENANT])
        wl.write_postgres(conn, data)
    before = rows(deployed_stack)

    created = backup("create", "--tier", "postgresql", "--namespace", TENANT)
    assert created.returncode == 0, created.stderr
    document = created.json()
    assert document["ran_on"] == "localhost"
    assert document["verify"]["ok"] and document["counts"]["postgresql"] == 6
    set_id = document["set_id"]
    assert backup("verify", set_id).json()["ran_on"] == "localhost"

    with deployed_stack.clients.postgresql() as conn:
        conn.execute("UPDATE memory_items SET content = 'damaged' WHERE tenant_id = %s", [TENANT])
    damaged = rows(deployed_stack)

    # Not interactive and no --yes: refused on the controller, before the playbook runs.
    refused = backup("restore", set_id, "--namespace", TENANT)
    assert refused.returncode == 2
    assert "pass --yes" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
    assert rows(deployed_stack) == damaged

    restored = backup("restore", set_id, "--namespace", TENANT, "--yes")
    assert restored.returncode == 0, restored.stderr
    assert restored.json()["ran_on"] == "localhost"  # under the controller's lock
    assert rows(deployed_stack) == before

    # A refusal on the host comes back as the host's one line and exit code.
    unknown = backup("restore", set_id, "--namespace", "no-such-tenant", "--yes")
    assert unknown.returncode == 2, unknown.stderr
    assert "no-such-tenant" in unknown.stderr and len(unknown.stderr.strip().splitlines()) == 1
