"""The monitoring of the test stack: Prometheus scrapes every job, Alertmanager routes by severity.

The test inventory deploys exporters, Prometheus (29090) and Alertmanager (29093) on
this host as instance memops-test, with 2 s scrape and evaluation intervals.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import time
from pathlib import Path

import httpx
import psycopg
import pytest
import yaml
from integration_helpers import (
    POSTGRES_MONITOR_USER,
    PROJECT_DIR,
    DeployedStack,
    assert_redis_monitor_is_least_privilege,
    secret,
)

from memops.clients import postgres_connect
from memops.deploy.targets import PostgresTarget, RedisTarget

pytestmark = pytest.mark.integration

PROMETHEUS = "http://127.0.0.1:29090"
INSTANCE = "memops-test"
CONFIG_DIR = Path("/etc/memops-monitoring") / INSTANCE
PROMETHEUS_CONFIG = CONFIG_DIR / "prometheus" / "prometheus.yml"
ALERTMANAGER_CONFIG = CONFIG_DIR / "alertmanager" / "alertmanager.yml"
TEXTFILE_DIR = Path("/var/lib/memops/textfile") / INSTANCE
GRAFANA_DIR = Path("/var/lib/memops-monitoring") / INSTANCE / "grafana"
JOBS = ("redis", "postgresql", "qdrant", "node", "prometheus", "alertmanager")
MONITORING_COMPONENTS = (
    "prometheus",
    "alertmanager",
    "node_exporter",
    "redis_exporter",
    "postgres_exporter",
)


def _query(expr: str) -> list[dict]:
    response = httpx.get(f"{PROMETHEUS}/api/v1/query", params={"query": expr}, timeout=5)
    response.raise_for_status()
    body = response.json()
    assert body["status"] == "success", body
    return body["data"]["result"]


def _values_by_job(expr: str) -> dict[str, str]:
    return {sample["metric"].get("job", ""): sample["value"][1] for sample in _query(expr)}


def _poll_until(expr: str, expected: dict[str, str], timeout_s: float = 30) -> dict[str, str]:
    """Poll ``expr`` until every job in ``expected`` has its value (first scrapes take a moment)."""
    deadline = time.monotonic() + timeout_s
    while True:
        values = _values_by_job(expr)
        got = {job: values.get(job) for job in expected}
        if got == expected or time.monotonic() > deadline:
            return got
        time.sleep(1)


def test_prometheus_scrapes_every_job(deployed_stack: DeployedStack) -> None:
    expected = dict.fromkeys(JOBS, "1")
    assert _poll_until("up", expected) == expected


def test_exporters_reach_their_tiers(deployed_stack: DeployedStack) -> None:
    # up == 1 only says the exporter answered; these say it logged in to Redis and PostgreSQL.
    assert _poll_until("redis_up", {"redis": "1"}) == {"redis": "1"}
    assert _poll_until("pg_up", {"postgresql": "1"}) == {"postgresql": "1"}
    assert _poll_until("pg_exporter_last_scrape_error", {"postgresql": "0"}) == {"postgresql": "0"}


def test_the_redis_exporter_user_reads_statistics_only(deployed_stack: DeployedStack) -> None:
    target = deployed_stack.targets.components["redis"]
    assert isinstance(target, RedisTarget)
    assert_redis_monitor_is_least_privilege(target, deployed_stack.state_dir)
    assert _poll_until("redis_up", {"redis": "1"}) == {"redis": "1"}


def test_the_postgres_exporter_role_is_pg_monitor_only(deployed_stack: DeployedStack) -> None:
    app = deployed_stack.targets.components["postgresql"]
    assert isinstance(app, PostgresTarget)
    monitor = dataclasses.replace(
        app,
        user=POSTGRES_MONITOR_USER,
        password=secret(deployed_stack.state_dir, "postgresql_monitor_password"),
    )
    # pg_hba.conf lets it reach only the database postgres; CONNECT on the app database is
    # also revoked from PUBLIC: either refusal keeps it out.
    refused = r"no pg_hba\.conf entry for .*memops_monitor|permission denied for database"
    with pytest.raises(psycopg.OperationalError, match=refused):
        postgres_connect(monitor, timeout_s=5).close()
    with postgres_connect(dataclasses.replace(monitor, dbname="postgres"), timeout_s=5) as conn:
        memberships = conn.execute(
            "SELECT r.rolname FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid"
            " WHERE m.member = (SELECT oid FROM pg_roles WHERE rolname = current_user)"
        ).fetchall()
        assert memberships == [("pg_monitor",)]
        flags = conn.execute(
            "SELECT rolsuper, rolcreaterole, rolcreatedb, rolreplication, rolbypassrls"
            " FROM pg_roles WHERE rolname = current_user"
        ).fetchone()
        assert flags == (False, False, False, False, False)
    with postgres_connect(app, timeout_s=5) as conn:
        readable = conn.execute(
            "SELECT has_table_privilege(%s, 'memory_items', 'SELECT'),"
            " has_database_privilege(%s, current_database(), 'CONNECT')",
            (POSTGRES_MONITOR_USER, POSTGRES_MONITOR_USER),
        ).fetchone()
        assert readable == (False, False)
    assert _poll_until("pg_up", {"postgresql": "1"}) == {"postgresql": "1"}


def test_scrape_and_evaluation_intervals_are_the_test_profile(
    deployed_stack: DeployedStack,
) -> None:
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    assert config["global"]["scrape_interval"] == "2s"
    assert config["global"]["evaluation_interval"] == "2s"
    assert {job["job_name"] for job in config["scrape_configs"]} == set(JOBS)


def test_deployed_prometheus_config_passes_promtool(deployed_stack: DeployedStack) -> None:
    run = subprocess.run(
        ["promtool", "check", "config", str(PROMETHEUS_CONFIG)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr


@pytest.mark.parametrize(
    ("severity", "receiver"),
    [("critical", "paging"), ("warning", "chat"), ("info", "null")],
)
def test_alertmanager_routes_by_severity(
    deployed_stack: DeployedStack, amtool: str, severity: str, receiver: str
) -> None:
    run = subprocess.run(
        [
            amtool,
            "config",
            "routes",
            "test",
            f"--config.file={ALERTMANAGER_CONFIG}",
            f"severity={severity}",
            "alertname=MemopsRoutingTest",
            "instance=localhost:26379",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == receiver


def test_alertmanager_inhibits_warnings_by_criticals_and_uses_the_test_webhooks(
    deployed_stack: DeployedStack,
) -> None:
    config = yaml.safe_load(ALERTMANAGER_CONFIG.read_text())
    assert config["inhibit_rules"] == [
        {
            "source_matchers": ['severity="critical"'],
            "target_matchers": ['severity="warning"'],
            "equal": ["alertname", "instance"],
        }
    ]
    receivers = {item["name"]: item.get("webhook_configs", []) for item in config["receivers"]}
    assert receivers["paging"][0]["url"] == "http://127.0.0.1:29500/paging"
    assert receivers["chat"][0]["url"] == "http://127.0.0.1:29500/chat"
    assert receivers["null"] == []
    assert config["route"]["group_wait"] == "1s"


def test_health_targets_and_textfile_dir_are_published(deployed_stack: DeployedStack) -> None:
    document = json.loads((deployed_stack.state_dir / "targets.json").read_text())
    for name in MONITORING_COMPONENTS:
        assert document["components"][name]["kind"] == "http", name
    assert document["components"]["prometheus"]["url"] == f"{PROMETHEUS}/-/ready"
    assert document["deployment"]["textfile_dir"] == str(TEXTFILE_DIR)
    assert TEXTFILE_DIR.is_dir()
    assert os.stat(TEXTFILE_DIR).st_mode & 0o777 == 0o755


def test_secrets_stay_in_private_files_and_out_of_argv(deployed_stack: DeployedStack) -> None:
    secret_files = (
        CONFIG_DIR / "redis_exporter" / "env",
        CONFIG_DIR / "postgres_exporter" / "env",
        CONFIG_DIR / "prometheus" / "qdrant_api_key",
    )
    for file in secret_files:
        assert os.stat(file).st_mode & 0o777 == 0o640, file

    components = deployed_stack.targets.components
    secrets = [
        components["redis"].password or "",  # type: ignore[union-attr]
        components["postgresql"].password or "",  # type: ignore[union-attr]
        components["qdrant"].api_key or "",  # type: ignore[union-attr]
    ]
    assert all(len(secret) >= 16 for secret in secrets)
    for component in ("redis-exporter", "postgres-exporter", "prometheus"):
        pid = Path(f"/run/memops-{component}-{INSTANCE}.pid").read_text().strip()
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode()
        assert not any(secret in argv for secret in secrets), component


def test_grafana_provisioning_points_at_the_test_prometheus(deployed_stack: DeployedStack) -> None:
    datasource = yaml.safe_load(
        (GRAFANA_DIR / "provisioning" / "datasources" / f"memops-{INSTANCE}.yml").read_text()
    )
    assert datasource["datasources"][0]["url"] == PROMETHEUS
    assert datasource["datasources"][0]["type"] == "prometheus"
    provider = yaml.safe_load(
        (GRAFANA_DIR / "provisioning" / "dashboards" / f"memops-{INSTANCE}.yml").read_text()
    )
    assert provider["providers"][0]["options"]["path"] == str(GRAFANA_DIR / "dashboards")
    repo = sorted(path.name for path in (PROJECT_DIR / "dashboards").glob("*.json"))
    assert sorted(path.name for path in (GRAFANA_DIR / "dashboards").glob("*.json")) == repo
