"""Alert rules and dashboards against the live test stack, and an end-to-end alert drill.

Prometheus (29090) runs the rules rendered with profile `test` (short `for`); Alertmanager
(29093) sends criticals to http://127.0.0.1:29500/paging, where the drill listens.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from integration_helpers import (
    PROJECT_DIR,
    REDIS_PIDFILE,
    TEST_INVENTORY,
    DeployedStack,
    invoke,
    pidfile_daemon,
    port_open,
)
from webhook_receiver import WebhookReceiver

from memops.render import dashboard_lint, promql
from memops.render.config import duration_seconds

pytestmark = pytest.mark.integration

PROMETHEUS = "http://127.0.0.1:29090"
ALERTMANAGER_CONFIG = Path("/etc/memops-monitoring/memops-test/alertmanager/alertmanager.yml")
WEBHOOK_PORT = 29500
ALERTS_DIR = PROJECT_DIR / "alerts"
DASHBOARDS_DIR = PROJECT_DIR / "dashboards"


def _api(path: str, **params: str) -> Any:
    response = httpx.get(f"{PROMETHEUS}{path}", params=params, timeout=10)
    body = response.json()
    assert body.get("status") == "success", f"{path} {params}: {body}"
    return body["data"]


def _committed_rules() -> list[dict[str, Any]]:
    rules = []
    for path in sorted(ALERTS_DIR.glob("*.rules.yml")):
        for group in yaml.safe_load(path.read_text())["groups"]:
            rules += group["rules"]
    return rules


def _dashboard_queries() -> list[tuple[str, str]]:
    found = []
    for path in sorted(DASHBOARDS_DIR.glob("*.json")):
        dashboard = json.loads(path.read_text())
        found += [
            (f"{path.name}: {where}", expr) for where, expr in dashboard_lint.queries(dashboard)
        ]
    return found


def _loaded_alerting_rules() -> dict[str, dict[str, Any]]:
    groups = _api("/api/v1/rules", type="alert")["groups"]
    return {rule["name"]: rule for group in groups for rule in group["rules"]}


def test_prometheus_runs_every_rule_with_the_test_profile(deployed_stack: DeployedStack) -> None:
    loaded = _loaded_alerting_rules()
    committed = {rule["alert"]: rule for rule in _committed_rules()}
    assert set(loaded) == set(committed)
    # same expressions as the committed rules; only `for` is shortened (RedisDown: 5s)
    # (Prometheus reformats a query it returns: compare what each rule reads)
    assert {name: promql.metric_names(loaded[name]["query"]) for name in committed} == {
        name: promql.metric_names(rule["expr"]) for name, rule in committed.items()
    }
    assert loaded["RedisDown"]["duration"] == 5
    assert max(rule["duration"] for rule in loaded.values()) <= 10
    assert all(rule["health"] != "err" for rule in loaded.values()), [
        (name, rule.get("lastError")) for name, rule in loaded.items() if rule["health"] == "err"
    ]


@pytest.mark.parametrize("rule", _committed_rules(), ids=lambda rule: rule["alert"])
def test_alert_expression_evaluates(deployed_stack: DeployedStack, rule: dict[str, Any]) -> None:
    data = _api("/api/v1/query", query=rule["expr"])
    assert data["resultType"] == "vector"


@pytest.mark.parametrize(
    ("where", "expr"), _dashboard_queries(), ids=[where for where, _ in _dashboard_queries()]
)
def test_dashboard_query_evaluates(deployed_stack: DeployedStack, where: str, expr: str) -> None:
    data = _api("/api/v1/query", query=dashboard_lint.expand(expr, rate_interval="1m"))
    assert data["resultType"] in ("vector", "scalar", "matrix"), where


def _documented_external_metrics() -> set[str]:
    document = yaml.safe_load((ALERTS_DIR / "external-metrics.yml").read_text())
    return {metric["name"] for metric in document["metrics"]}


def _series_names(name: str) -> set[str]:
    """A histogram's series names (_bucket/_sum/_count) map back to the metric itself."""
    for suffix in ("_bucket", "_sum", "_count"):
        if name.endswith(suffix):
            return {name, name.removesuffix(suffix)}
    return {name}


def test_every_metric_name_is_live_or_documented(deployed_stack: DeployedStack) -> None:
    # `invoke health` publishes memops_health_* through node_exporter's textfile collector
    assert invoke("health", "--inventory", TEST_INVENTORY, "--json").returncode == 0
    used: set[str] = set()
    for rule in _committed_rules():
        used |= promql.metric_names(rule["expr"])
    for _, expr in _dashboard_queries():
        used |= promql.metric_names(expr)
    documented = _documented_external_metrics()

    deadline = time.monotonic() + 30
    while True:
        live = set(_api("/api/v1/label/__name__/values"))
        missing = sorted(name for name in used if not (_series_names(name) & (live | documented)))
        if not missing or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert missing == [], "neither scraped nor listed in alerts/external-metrics.yml"
    # the documented ones really are external: none is in the live scrape of this stack
    assert sorted(documented & live) == []
    assert {"memops_health_state", "memops_health_failure_streak"} <= live


def _drill_bound_seconds() -> dict[str, float]:
    config = yaml.safe_load(_api("/api/v1/status/config")["yaml"])
    alertmanager = yaml.safe_load(ALERTMANAGER_CONFIG.read_text())
    return {
        "for": float(_loaded_alerting_rules()["RedisDown"]["duration"]),
        "scrape_interval": duration_seconds(config["global"]["scrape_interval"]),
        "evaluation_interval": duration_seconds(config["global"]["evaluation_interval"]),
        "group_wait": duration_seconds(alertmanager["route"].get("group_wait", "30s")),
    }


def _redis_down_active() -> bool:
    alerts = _api("/api/v1/alerts")["alerts"]
    return any(alert["labels"].get("alertname") == "RedisDown" for alert in alerts)


def _starts_after(notification_alerts: list[dict[str, Any]], moment: datetime) -> bool:
    for alert in notification_alerts:
        if alert["labels"].get("alertname") == "RedisDown" and alert["status"] == "firing":
            started = datetime.fromisoformat(alert["startsAt"].replace("Z", "+00:00"))
            if started >= moment:
                return True
    return False


def test_redis_down_pages_and_resolves(deployed_stack: DeployedStack) -> None:
    """Stop Redis: RedisDown reaches the paging webhook; start it: the alert resolves."""
    deadline = time.monotonic() + 60
    while _redis_down_active() and time.monotonic() < deadline:
        time.sleep(1)  # an earlier test's outage must be over before this drill starts
    assert not _redis_down_active()
    bound = _drill_bound_seconds()
    redis_port = deployed_stack.targets.components["redis"].port  # type: ignore[attr-defined]

    with WebhookReceiver("127.0.0.1", WEBHOOK_PORT) as receiver:
        stopped_wall = datetime.now(UTC).replace(microsecond=0)
        pidfile_daemon("stop", REDIS_PIDFILE)
        stopped_at = time.monotonic()
        try:
            assert not port_open("127.0.0.1", redis_port)
            firing = receiver.wait_for("RedisDown", "firing", timeout_s=90, since=stopped_at)
            while firing is not None and not _starts_after(firing.body["alerts"], stopped_wall):
                # a notification still queued from an earlier outage: wait for this one
                firing = receiver.wait_for(
                    "RedisDown", "firing", timeout_s=90, since=firing.received_at + 0.001
                )
        finally:
            restart_started_at = time.monotonic()
            restart = invoke("deploy", "--inventory", TEST_INVENTORY, "--tags", "redis", "--json")
        assert restart.returncode == 0, restart.stderr
        # Redis is up early in that deploy: the resolved notice may arrive before it ends
        resolved = receiver.wait_for(
            "RedisDown", "resolved", timeout_s=90, since=restart_started_at
        )
        chat_pages = [
            note
            for note in receiver.notifications
            if note.path == "/chat" and note.has("RedisDown", "firing")
        ]

    assert firing is not None, "RedisDown never reached the paging webhook"
    assert firing.path == "/paging"
    assert chat_pages == [], "a critical alert must page, not go to chat"
    assert firing.body["alerts"][0]["labels"]["severity"] == "critical"
    assert firing.body["alerts"][0]["annotations"]["runbook_url"].endswith("/RedisDown.md")
    assert resolved is not None, "RedisDown did not resolve after Redis came back"

    latency = firing.received_at - stopped_at
    # The budget is for + 2 scrape intervals + group_wait. A rule is only evaluated
    # every evaluation interval, so the alert may wait up to one more before it fires.
    budget = (
        bound["for"]
        + 2 * bound["scrape_interval"]
        + bound["group_wait"]
        + bound["evaluation_interval"]
    )
    measurement = {
        "alert": "RedisDown",
        "fire_latency_s": round(latency, 2),
        "resolve_latency_after_restart_began_s": round(
            resolved.received_at - restart_started_at, 2
        ),
        "budget_s": budget,
        **{f"{key}_s": value for key, value in bound.items()},
    }
    (deployed_stack.state_dir / "alert-drill.json").write_text(json.dumps(measurement) + "\n")
    print(f"\nalert drill: {json.dumps(measurement)}")
    assert latency <= budget, measurement
