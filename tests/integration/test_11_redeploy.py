"""Re-deploys of the test stack: an unchanged component is only probed; drift runs its role in full.

A role records a deploy fingerprint after its healthy probe (roles/memops_service); these
tests show what the fast path skips and that it never hides a change: a file edited by
hand is put back, and a schema that fell behind (the quick probe fails) is migrated.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from integration_helpers import (
    TEST_INVENTORY,
    DeployedStack,
    audit_owner_lent,
    invoke,
    migrate_cli,
)

from memops.deploy.targets import PostgresTarget
from memops.schema.migrate import current_version, latest_version

pytestmark = pytest.mark.integration

# node_exporter's argv file: harmless to restore (a restart of the test stack's node_exporter)
NODE_EXPORTER_ARGS = Path("/etc/memops-monitoring/memops-test/node_exporter/service.args")


def _deploy(*args: str) -> dict[str, Any]:
    run = invoke("deploy", "--inventory", TEST_INVENTORY, "--json", *args)
    assert run.returncode == 0, f"{run.stderr.strip()}\n{run.stdout[-2000:]}"
    document: dict[str, Any] = run.json()
    return document


def _tasks_run(document: dict[str, Any]) -> int:
    return sum(host["ok"] + host["changed"] for host in document["hosts"].values())


def _changed(document: dict[str, Any]) -> list[str]:
    return [task["task"] for task in document["changed_tasks"]]


def test_unchanged_redeploy_only_probes(deployed_stack: DeployedStack) -> None:
    fast = _deploy()
    full = _deploy("--full")

    assert fast["changed"] == 0, _changed(fast)
    assert full["changed"] == 0, _changed(full)
    # the full run repeats install and configure for every component (232 tasks when this
    # was written), the fast one only asks, compares and probes (120)
    assert _tasks_run(fast) < 0.6 * _tasks_run(full), (_tasks_run(fast), _tasks_run(full))
    assert (deployed_stack.state_dir / "targets.json").is_file()


def test_a_file_edited_by_hand_is_put_back(deployed_stack: DeployedStack) -> None:
    original = NODE_EXPORTER_ARGS.read_bytes()
    NODE_EXPORTER_ARGS.write_bytes(original + b"--collector.this-was-edited-by-hand\n")

    repaired = _deploy("--tags", "monitoring")

    assert NODE_EXPORTER_ARGS.read_bytes() == original
    assert any(
        "Record the command line of memops-node-exporter" in task for task in _changed(repaired)
    )
    assert _deploy("--tags", "monitoring")["changed"] == 0


def test_a_schema_that_fell_behind_is_migrated(deployed_stack: DeployedStack) -> None:
    target = deployed_stack.targets.components["postgresql"]
    assert isinstance(target, PostgresTarget)
    # the newest migration loses no data when reverted (0004 only hands the audit log to its
    # owner role, which it needs lent, as the deploy lends it)
    with audit_owner_lent(deployed_stack):
        down = migrate_cli(target, "--to", str(latest_version() - 1))
    assert down.returncode == 0, down.stderr

    # the fingerprint still matches, but the quick probe sees the old schema version
    migrated = _deploy("--tags", "postgresql")

    with deployed_stack.clients.postgresql() as conn:
        assert current_version(conn) == latest_version()
    assert any("Migrate the schema" in task for task in _changed(migrated)), _changed(migrated)
