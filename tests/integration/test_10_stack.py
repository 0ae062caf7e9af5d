"""The test stack, deployed by `invoke deploy`: healthy, real data paths, idempotent."""

from __future__ import annotations

import os
import subprocess

import psycopg
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
from memops.testing import workload

pytestmark = pytest.mark.integration


def test_deploy_reports_every_component_healthy(deployed_stack: DeployedStack) -> None:
    run = invoke("health", "--inventory", TEST_INVENTORY, "--json")

    snapshot = run.json()
    assert run.returncode == 0, run.stderr
    assert snapshot["state"] == "healthy"
    assert set(snapshot["components"]) == {
        "redis",
        "postgresql",
        "qdrant",
        "prometheus",
        "alertmanager",
        "node_exporter",
        "redis_exporter",
        "postgres_exporter",
    }
    for name, component in snapshot["components"].items():
        assert component["state"] == "healthy", (name, component)
    assert snapshot["components"]["postgresql"]["details"]["schema_version"] == latest_version()


def test_targets_file_is_private(deployed_stack: DeployedStack) -> None:
    mode = os.stat(deployed_stack.state_dir / "targets.json").st_mode & 0o777
    assert mode == 0o600


def test_data_round_trips_through_every_tier(deployed_stack: DeployedStack) -> None:
    load = workload.generate(seed=20261123, tenants=2, items_per_tenant=5)

    client = deployed_stack.clients.redis()
    for tenant in load.tenants:
        for key in client.scan_iter(match=workload.namespace_pattern(load.prefix, tenant)):
            client.delete(key)
    assert workload.write_redis(client, load) == len(load.redis)
    assert workload.verify_redis(client, load) == []

    with deployed_stack.clients.postgresql() as conn:
        conn.execute("DELETE FROM memory_items WHERE tenant_id = ANY(%s)", [list(load.tenants)])
        workload.write_postgres(conn, load)
        assert workload.verify_postgres(conn, load) == []

    qdrant = deployed_stack.clients.qdrant()
    collection = "roundtrip_test"
    if qdrant.collection_exists(collection):
        qdrant.delete_collection(collection)
    workload.write_qdrant(qdrant, load, collection)
    assert workload.verify_qdrant(qdrant, load, collection) == []


def test_audit_log_refuses_delete_and_update(deployed_stack: DeployedStack) -> None:
    with deployed_stack.clients.postgresql() as conn:
        conn.execute(
            "INSERT INTO execution_audit_log (tenant_id, actor, action) VALUES (%s, %s, %s)",
            ["tenant-audit", "integration-test", "probe"],
        )
        # The application role holds INSERT and SELECT only (0004): refused before the
        # append-only triggers; nor can it disable them, drop the log (0007: the schema
        # is no longer its own) or turn off the row security of a quarantine.
        for statement in (
            "DELETE FROM execution_audit_log WHERE tenant_id = 'tenant-audit'",
            "UPDATE execution_audit_log SET actor = 'x'",
            "ALTER TABLE execution_audit_log DISABLE TRIGGER ALL",
            "DROP TABLE execution_audit_log",
            "ALTER TABLE memory_items DISABLE ROW LEVEL SECURITY",
            "ALTER TABLE memory_quarantine DISABLE ROW LEVEL SECURITY",
        ):
            refused = pytest.raises(psycopg.errors.InsufficientPrivilege)
            with refused, conn.transaction(force_rollback=True):  # never kept, whatever happens
                conn.execute(statement)
        count = conn.execute(
            "SELECT count(*) FROM execution_audit_log WHERE tenant_id = 'tenant-audit'"
        ).fetchone()
        assert count is not None and count[0] >= 1


def test_migrations_go_down_and_up_again(deployed_stack: DeployedStack) -> None:
    target = deployed_stack.targets.components["postgresql"]
    assert isinstance(target, PostgresTarget)

    def migrate(*args: str) -> subprocess.CompletedProcess[str]:
        return migrate_cli(target, *args)

    # The latest migration loses no data when reverted (0007 only hands tables to the
    # owner role). Its up and down need that role lent, as the deploy lends it.
    with audit_owner_lent(deployed_stack):
        down = migrate("--to", str(latest_version() - 1))
        assert down.returncode == 0, down.stderr
        with deployed_stack.clients.postgresql() as conn:
            assert current_version(conn) == latest_version() - 1
        up = migrate("--to", "latest")
        assert up.returncode == 0, up.stderr
    with deployed_stack.clients.postgresql() as conn:
        assert current_version(conn) == latest_version()


def test_second_deploy_changes_nothing(deployed_stack: DeployedStack) -> None:
    run = invoke("deploy", "--inventory", TEST_INVENTORY, "--json")

    assert run.returncode == 0, run.stderr
    document = run.json()
    assert document["changed"] == 0, document["changed_tasks"]


def test_up_deploys_probes_backs_up_drills_and_names_the_standin(
    deployed_stack: DeployedStack,
) -> None:
    # The drill checks the tiers against each other: start from tiers that agree (other
    # tests write rows and points apart, and a stack reused between runs keeps them).
    clients = deployed_stack.clients
    load = workload.generate(seed=20261202, tenants=2, items_per_tenant=5)
    with clients.postgresql() as conn:
        conn.execute("DELETE FROM memory_items")
        workload.write_postgres(conn, load)
    qdrant = clients.qdrant()
    for collection in qdrant.get_collections().collections:
        qdrant.delete_collection(collection.name)
    workload.write_qdrant(qdrant, load, "up_test")

    run = invoke("up", "--inventory", TEST_INVENTORY, "--json")

    assert run.returncode == 0, run.stderr
    summary = run.json()
    assert summary["ok"] is True and summary["changed"] == 0
    assert summary["backup"]["verify"]["ok"] is True
    assert summary["drill"]["ok"] is True, summary["drill"]
    assert summary["drill"]["set_id"] == summary["backup"]["set_id"]
    assert summary["health"]["state"] == "healthy"
    rows = {row["component"]: row for row in summary["components"]}
    assert rows["redis"]["endpoint"] == "127.0.0.1:26379"
    assert rows["postgresql"]["endpoint"] == "127.0.0.1:25432"
    assert "stand-in" in rows["qdrant"]["note"]
    assert rows["redis"]["note"] == ""
    assert summary["rendered"] == [], "the committed alerts/ and dashboards/ are up to date"
    assert summary["urls"] == {
        "prometheus": "http://127.0.0.1:29090/",
        "alertmanager": "http://127.0.0.1:29093/",
    }
