"""Grafana dashboard-linter rules over the committed dashboards/, and proof the rules can fail.

The rules live in memops/render/dashboard_lint.py (the renderer runs them too);
here they run on the files as committed, each rule a test of its own, and on
deliberately broken copies, which every rule must reject. A fresh render from
templates/dashboards/ must equal what is committed (`invoke render` writes it).
"""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from memops.render import dashboard_lint, promql
from memops.render.config import REQUIRED_JOBS
from memops.render.dashboards import (
    DASHBOARDS,
    DashboardError,
    render_dashboards,
)

REPO = Path(__file__).resolve().parents[1]
DASHBOARDS_DIR = REPO / "dashboards"
DATA_FILE = REPO / "templates" / "observability.yml"

# The uid of every dashboard file: part of the interface, never changes.
EXPECTED_UIDS = {
    "memory-overview.json": "memops-memory-overview",
    "redis.json": "memops-redis",
    "postgresql.json": "memops-postgresql",
    "qdrant.json": "memops-qdrant",
    "supersede-lifecycle.json": "memops-supersede-lifecycle",
    "backups-drills.json": "memops-backups-drills",
    "replication.json": "memops-replication",
}
PROVISIONING = ("provisioning/dashboards/memops.yml", "provisioning/datasources/memops.yml")
DEFAULT_JOBS = {name: name for name in REQUIRED_JOBS}


def _render_inputs() -> tuple[str, str, dict[str, str]]:
    """metric_prefix, datasource uid and jobs as templates/observability.yml sets them."""
    if not DATA_FILE.exists():
        return "martha_", "prometheus", dict(DEFAULT_JOBS)
    data = yaml.safe_load(DATA_FILE.read_text(encoding="utf-8"))
    return data["metric_prefix"], data["datasource"]["uid"], dict(data["jobs"])


def _committed(name: str) -> dict[str, Any]:
    return json.loads((DASHBOARDS_DIR / name).read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def rendered() -> dict[str, str]:
    return render_dashboards(*_render_inputs())


# --- the committed files -------------------------------------------------------------------


def test_every_dashboard_is_committed_and_nothing_else():
    committed = sorted(p.name for p in DASHBOARDS_DIR.glob("*.json"))
    assert committed == sorted(EXPECTED_UIDS)
    assert sorted(EXPECTED_UIDS) == sorted(DASHBOARDS)
    for name in PROVISIONING:
        assert (DASHBOARDS_DIR / name).is_file(), name


def test_fresh_render_equals_committed(rendered):
    stale = [
        name
        for name, text in rendered.items()
        if not (DASHBOARDS_DIR / name).is_file()
        or (DASHBOARDS_DIR / name).read_text(encoding="utf-8") != text
    ]
    assert not stale, f"dashboards/ is stale, run `invoke render`: {stale}"
    assert sorted(rendered) == sorted([*EXPECTED_UIDS, *PROVISIONING])


@pytest.mark.parametrize("rule", sorted(dashboard_lint.RULES))
@pytest.mark.parametrize("name", sorted(EXPECTED_UIDS))
def test_committed_dashboard_passes(name, rule):
    assert dashboard_lint.RULES[rule](_committed(name)) == []


@pytest.mark.parametrize("name", sorted(EXPECTED_UIDS))
def test_uid_is_stable(name):
    dashboard = _committed(name)
    assert dashboard["uid"] == EXPECTED_UIDS[name]
    assert len(dashboard["uid"]) <= 40
    assert dashboard_lint.lint(dashboard, expected_uid=EXPECTED_UIDS[name]) == []


@pytest.mark.parametrize("name", sorted(EXPECTED_UIDS))
def test_layout_and_variables(name):
    dashboard = _committed(name)
    ids = [p["id"] for p in dashboard["panels"]]
    assert ids == list(range(1, len(ids) + 1)), "panel ids are assigned in reading order"
    by_name = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert by_name["datasource"]["type"] == "datasource"
    assert by_name["datasource"]["query"] == "prometheus"
    for variable in ("job", "instance"):
        assert by_name[variable]["type"] == "query"
        assert by_name[variable]["definition"].startswith("label_values(")
    assert "$job" in by_name["instance"]["definition"], "instance values follow the job choice"
    for panel in dashboard["panels"]:
        assert panel["type"] in ("stat", "timeseries")
        assert panel["fieldConfig"]["defaults"]["unit"]
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        for target in panel["targets"]:
            assert target["datasource"] == {"type": "prometheus", "uid": "${datasource}"}


def test_provisioning_files(rendered):
    uid = _render_inputs()[1]
    datasources = yaml.safe_load(rendered["provisioning/datasources/memops.yml"])
    (source,) = datasources["datasources"]
    assert source["type"] == "prometheus" and source["uid"] == uid
    assert source["url"].startswith("http")
    providers = yaml.safe_load(rendered["provisioning/dashboards/memops.yml"])
    (provider,) = providers["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards/memops"
    for name in EXPECTED_UIDS:
        current = _committed(name)["templating"]["list"][0]["current"]["value"]
        assert current == uid, "the datasource variable defaults to the provisioned one"


def test_every_query_is_valid_promql(tmp_path, promtool):
    """promtool parses every target and variable selector (variables expanded as Grafana would)."""
    rules = []
    for name in sorted(EXPECTED_UIDS):
        for index, (_, expr) in enumerate(dashboard_lint.queries(_committed(name))):
            record = f"dashboard_check:{name.split('.')[0].replace('-', '_')}:{index}"
            rules.append({"record": record, "expr": dashboard_lint.expand(expr)})
    path = tmp_path / "queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    result = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_metric_prefix_and_jobs_come_from_the_inputs():
    jobs = dict(DEFAULT_JOBS, qdrant="vectors", **{"memory-service": "agent-memory"})
    files = render_dashboards("acme_", "prom-main", jobs)
    overview = json.loads(files["memory-overview.json"])
    names = dashboard_lint.metric_names(overview)
    assert "acme_cache_hits_total" in names and not any(n.startswith("martha_") for n in names)
    exprs = [e for _, e in dashboard_lint.queries(overview)]
    assert any('job="vectors"' in e for e in exprs)
    job = overview["templating"]["list"][1]
    assert "agent-memory" in job["regex"] and "agent-memory" in job["current"]["value"]
    assert overview["templating"]["list"][0]["current"]["value"] == "prom-main"
    assert "uid: prom-main" in files["provisioning/datasources/memops.yml"]


# Metrics the dashboards read from exporters memops deploys: names checked against running
# Debian prometheus-redis-exporter 1.45, prometheus-postgres-exporter 0.11 and
# prometheus-node-exporter 1.5, and Qdrant's /metrics (the stand-in exposes the same names;
# rest_responses_duration_seconds is a histogram since Qdrant 1.8). memops_health_* are
# written by `invoke health` to node_exporter's textfile directory, memops_backup_* and
# memops_restore_drill_* by the backup tasks and the drill.
EXPORTER_METRICS = {
    "redis": {
        "redis_blocked_clients",
        "redis_commands_duration_seconds_total",
        "redis_commands_processed_total",
        "redis_commands_total",
        "redis_connected_clients",
        "redis_connected_slaves",
        "redis_db_keys",
        "redis_db_keys_expiring",
        "redis_evicted_keys_total",
        "redis_expired_keys_total",
        "redis_keyspace_hits_total",
        "redis_keyspace_misses_total",
        "redis_memory_max_bytes",
        "redis_memory_used_bytes",
        "redis_memory_used_rss_bytes",
        "redis_net_input_bytes_total",
        "redis_net_output_bytes_total",
        "redis_rdb_changes_since_last_save",
        "redis_rdb_last_bgsave_status",
        "redis_rdb_last_save_timestamp_seconds",
        "redis_rejected_connections_total",
        "redis_up",
        "redis_uptime_in_seconds",
    },
    "postgresql": {
        "pg_database_size_bytes",
        "pg_exporter_last_scrape_error",
        "pg_locks_count",
        "pg_settings_max_connections",
        "pg_stat_activity_count",
        "pg_stat_activity_max_tx_duration",
        "pg_stat_database_blks_hit",
        "pg_stat_database_blks_read",
        "pg_stat_database_deadlocks",
        "pg_stat_database_temp_bytes",
        "pg_stat_database_tup_deleted",
        "pg_stat_database_tup_fetched",
        "pg_stat_database_tup_inserted",
        "pg_stat_database_tup_updated",
        "pg_stat_database_xact_commit",
        "pg_stat_database_xact_rollback",
        "pg_up",
    },
    "qdrant": {
        "app_info",
        "app_status_recovery_mode",
        "collections_total",
        "collections_vector_total",
        "rest_responses_duration_seconds_bucket",
        "rest_responses_fail_total",
        "rest_responses_total",
    },
    "node": {
        "node_textfile_scrape_error",
        "memops_health_checked_timestamp_seconds",
        "memops_health_component_up",
        "memops_health_failure_streak",
        "memops_health_queue_depth",
        "memops_health_state",
    },
    # written by the backup tasks and the drill (memops.backup.metrics)
    "backup": {
        "memops_backup_last_run_success",
        "memops_backup_last_success_timestamp_seconds",
        "memops_backup_size_bytes",
        "memops_restore_drill_duration_seconds",
        "memops_restore_drill_last_run_timestamp_seconds",
        "memops_restore_drill_last_success",
    },
    "prometheus": {"up"},
    # The replicated tiers (issue #25): redis_exporter 1.45 scraping Redis 7.0 replicas and a
    # Sentinel here, postgres_exporter 0.11 with memops' queries on a PostgreSQL 15 standby,
    # and the sources of Patroni 3.0.2 (patroni/api.py) and etcd 3.4 (etcdserver/metrics.go).
    "replication": {
        "redis_instance_info",
        "redis_master_link_up",
        "redis_master_repl_offset",
        "redis_connected_slave_offset_bytes",
        "redis_connected_slave_lag_seconds",
        "redis_sentinel_master_ckquorum_status",
        "redis_sentinel_master_status",
        "redis_sentinel_master_ok_sentinels",
        "redis_sentinel_master_ok_slaves",
        "pg_replication_lag",
        "pg_replication_is_standby",
        "pg_replication_wal_receiver_streaming",
        "pg_stat_replication_pg_wal_lsn_diff",
        "patroni_primary",
        "patroni_postgres_timeline",
        "patroni_cluster_unlocked",
        "etcd_server_has_leader",
        "etcd_server_leader_changes_seen_total",
    },
}
EXTERNAL_METRICS_FILE = REPO / "alerts" / "external-metrics.yml"


def _documented_external_metrics() -> set[str]:
    """Names in alerts/external-metrics.yml (or, before a render, the data file's list)."""
    if EXTERNAL_METRICS_FILE.exists():
        data = yaml.safe_load(EXTERNAL_METRICS_FILE.read_text(encoding="utf-8"))
        return {m["name"] for m in data["metrics"]}
    if DATA_FILE.exists():
        data = yaml.safe_load(DATA_FILE.read_text(encoding="utf-8"))
        prefix = data["metric_prefix"]
        return {m["name"].replace("[[ prefix ]]", prefix) for m in data["external_metrics"]}
    pytest.skip("no list of external metrics yet")


def _base_name(name: str) -> str:
    for suffix in ("_bucket", "_count", "_sum"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def test_every_metric_comes_from_an_exporter_or_is_documented():
    used = set()
    for name in EXPECTED_UIDS:
        used |= dashboard_lint.metric_names(_committed(name))
    from_exporters = set().union(*EXPORTER_METRICS.values())
    documented = _documented_external_metrics()
    undocumented = sorted(
        n for n in used - from_exporters if n not in documented and _base_name(n) not in documented
    )
    assert not undocumented, (
        "dashboards read metrics no exporter exposes and alerts/external-metrics.yml "
        f"does not list: {undocumented}"
    )
    assert from_exporters <= used, f"unused entries: {sorted(from_exporters - used)}"


def test_render_is_deterministic():
    assert render_dashboards(*_render_inputs()) == render_dashboards(*_render_inputs())


# --- the rules fail on broken dashboards ---------------------------------------------------


def _panel(dashboard: dict[str, Any], title_part: str) -> dict[str, Any]:
    return next(p for p in dashboard["panels"] if title_part in p["title"])


def _variable(dashboard: dict[str, Any], name: str) -> dict[str, Any]:
    return next(v for v in dashboard["templating"]["list"] if v["name"] == name)


def _drop_variable(name):
    def mutate(d):
        d["templating"]["list"] = [v for v in d["templating"]["list"] if v["name"] != name]

    return mutate


def _set_expr(title_part, expr, index=0):
    def mutate(d):
        _panel(d, title_part)["targets"][index]["expr"] = expr

    return mutate


SEL = 'job=~"$job",instance=~"$instance"'
BROKEN = {
    "no datasource variable": (_drop_variable("datasource"), "template-datasource-rule"),
    "no job variable": (_drop_variable("job"), "template-job-rule"),
    "no instance variable": (_drop_variable("instance"), "template-instance-rule"),
    "single-select instance": (
        lambda d: _variable(d, "instance").update(multi=False),
        "template-instance-rule",
    ),
    "panel with a fixed datasource": (
        lambda d: _panel(d, "Uptime").update(datasource={"type": "prometheus", "uid": "prom"}),
        "panel-datasource-rule",
    ),
    "target with a fixed datasource": (
        lambda d: _panel(d, "Uptime")["targets"][0].update(datasource={"uid": "prom"}),
        "panel-datasource-rule",
    ),
    "panel without unit": (
        lambda d: _panel(d, "Uptime")["fieldConfig"]["defaults"].pop("unit"),
        "panel-units-rule",
    ),
    "panel with an unknown unit": (
        lambda d: _panel(d, "Uptime")["fieldConfig"]["defaults"].update(unit="furlongs"),
        "panel-units-rule",
    ),
    "rate over a fixed range": (
        _set_expr("Commands", f"sum(rate(redis_commands_processed_total{{{SEL}}}[5m]))"),
        "target-rate-interval-rule",
    ),
    "increase over a fixed range": (
        _set_expr("Commands", f"increase(redis_commands_processed_total{{{SEL}}}[1h])"),
        "target-rate-interval-rule",
    ),
    "rate of a subquery": (
        _set_expr("Commands", f"rate(redis_commands_processed_total{{{SEL}}}[5m:1m])"),
        "target-rate-interval-rule",
    ),
    "bare counter": (
        _set_expr("Evictions", f"redis_evicted_keys_total{{{SEL}}}"),
        "target-counter-agg-rule",
    ),
    "counter in another function": (
        _set_expr("Evictions", f"delta(redis_evicted_keys_total{{{SEL}}}[$__rate_interval])"),
        "target-counter-agg-rule",
    ),
    "counter selected by __name__": (
        _set_expr("Evictions", f'{{__name__="redis_evicted_keys_total",{SEL}}}'),
        "target-counter-agg-rule",
    ),
    "selector without job": (
        _set_expr("Uptime", 'redis_uptime_in_seconds{instance=~"$instance"}'),
        "target-job-rule",
    ),
    "selector with a fixed instance": (
        _set_expr("Uptime", 'redis_uptime_in_seconds{job=~"$job",instance="a:1"}'),
        "target-instance-rule",
    ),
    "undefined variable": (
        _set_expr("Uptime", f'redis_uptime_in_seconds{{{SEL},cluster=~"$cluster"}}'),
        "template-variable-rule",
    ),
    "unbalanced query": (
        _set_expr("Uptime", f"max(redis_uptime_in_seconds{{{SEL}}}"),
        "target-promql-rule",
    ),
    "duplicate panel id": (
        lambda d: d["panels"][1].update(id=d["panels"][0]["id"]),
        "panel-id-rule",
    ),
    "table panel": (lambda d: _panel(d, "Uptime").update(type="table"), "panel-type-rule"),
    "graph panel": (lambda d: _panel(d, "Memory").update(type="graph"), "panel-type-rule"),
    "no gridPos": (lambda d: _panel(d, "Uptime").pop("gridPos"), "panel-gridpos-rule"),
    "overlapping panels": (
        lambda d: d["panels"][1].update(gridPos=dict(d["panels"][0]["gridPos"])),
        "panel-gridpos-rule",
    ),
    "panel without description": (
        lambda d: _panel(d, "Uptime").update(description=""),
        "panel-title-description-rule",
    ),
    "no uid": (lambda d: d.pop("uid"), "uid-rule"),
    "uid longer than 40": (lambda d: d.update(uid="memops-" + "x" * 40), "uid-rule"),
    "changed uid": (lambda d: d.update(uid="memops-redis-2"), "uid-stable-rule"),
    "editable dashboard": (lambda d: d.update(editable=True), "uneditable-dashboard-rule"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_linter_rejects_broken_dashboard(case):
    mutate, rule = BROKEN[case]
    dashboard = copy.deepcopy(_committed("redis.json"))
    assert dashboard_lint.lint(dashboard, expected_uid="memops-redis") == []
    mutate(dashboard)
    problems = dashboard_lint.lint(dashboard, expected_uid="memops-redis")
    assert any(p.startswith(rule + ":") for p in problems), problems


def test_broken_file_fails_the_committed_file_checks(tmp_path):
    """The same checks the committed files pass reject a broken file on disk."""
    broken = copy.deepcopy(_committed("qdrant.json"))
    broken["panels"][0]["fieldConfig"]["defaults"].pop("unit")
    broken["panels"][1]["targets"][0]["expr"] = "rate(rest_responses_total[5m])"
    path = tmp_path / "qdrant.json"
    path.write_text(json.dumps(broken))
    problems = dashboard_lint.lint(json.loads(path.read_text()), expected_uid="memops-qdrant")
    rules = {p.split(":")[0] for p in problems}
    assert {
        "panel-units-rule",
        "target-rate-interval-rule",
        "target-job-rule",
        "target-instance-rule",
    } <= rules


def _templates_copy(tmp_path: Path) -> Path:
    target = tmp_path / "templates"
    shutil.copytree(REPO / "templates" / "dashboards", target)
    return target


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("        unit: s\n", "", "missing 'unit'"),
        ("[$__rate_interval]", "[5m]", "target-rate-interval-rule"),
        ("type: timeseries", "type: table", "type must be one of"),
        ("uid: memops-redis", "uid: memops-redis-v2", "must stay 'memops-redis'"),
        ('{{ s("redis_up") }}', "redis_up", "target-job-rule"),
    ],
)
def test_render_refuses_a_broken_template(tmp_path, old, new, message):
    templates = _templates_copy(tmp_path)
    source = templates / "redis.yml.j2"
    text = source.read_text(encoding="utf-8")
    assert old in text
    source.write_text(text.replace(old, new, 1), encoding="utf-8")
    with pytest.raises(DashboardError, match=r"redis\.yml\.j2") as excinfo:
        render_dashboards(*_render_inputs(), templates_dir=templates)
    assert message in str(excinfo.value)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("martha-", "prometheus", DEFAULT_JOBS), "metric_prefix"),
        (("martha_", "", DEFAULT_JOBS), "datasource uid"),
        (("martha_", "x" * 41, DEFAULT_JOBS), "datasource uid"),
        (("martha_", "prometheus", {"redis": "redis"}), "jobs: missing postgresql"),
        (("martha_", "prometheus", dict(DEFAULT_JOBS, redis='re"dis')), "jobs.redis"),
    ],
)
def test_render_refuses_bad_input(args, message):
    with pytest.raises(DashboardError, match=message):
        render_dashboards(*args)


# --- the PromQL analysis the rules rely on ---------------------------------------------------


def test_promql_selectors():
    expr = (
        'histogram_quantile(0.95, sum by (le, endpoint) (rate(x_bucket{job=~"$job",a="}"}'
        "[$__rate_interval]))) / ignoring(state) group_left() y_total"
    )
    found = promql.selectors(expr)
    assert [(s.metric, s.range, s.function) for s in found] == [
        ("x_bucket", "$__rate_interval", "rate"),
        ("y_total", None, None),
    ]
    assert found[0].matchers == (("job", "=~", "$job"), ("a", "=", "}"))
    assert promql.metric_names('{__name__="z"} + max(w) by (i)') == {"z", "w"}
    calls = promql.rate_calls("rate(a[5m]) + increase(b{c='d'}[$__rate_interval]) + irate((a)[1m])")
    assert [(c.function, c.range) for c in calls] == [
        ("rate", "5m"),
        ("increase", "$__rate_interval"),
        ("irate", None),
    ]
    with pytest.raises(promql.PromQLError):
        promql.selectors('a{b="c"')


def test_expand_for_prometheus():
    expr = 'rate(a{job=~"$job",instance=~"${instance}"}[$__rate_interval])'
    assert dashboard_lint.expand(expr) == 'rate(a{job=~".+",instance=~".+"}[1m])'
    assert dashboard_lint.expand(expr, {"job": "redis"}, "2m") == (
        'rate(a{job=~"redis",instance=~".+"}[2m])'
    )
