"""Alert rules as data: promtool proof, runbooks, `invoke render [--check]` and bad input.

promtool comes from Debian's `prometheus` package (/usr/bin/promtool); the
prometheus role installs it during the integration tests, which run first. These
tests fail (they do not skip) when it is missing: the proof is the point.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from root_tasks import root_collection

from memops.ops.render import RENDER
from memops.ops.runner import run_operation
from memops.render import alerts as alert_render
from memops.render.config import SEVERITIES, ConfigError, duration_seconds, load_config
from memops.render.driver import render_all
from qdrant_standin.metrics import RequestMetrics

ROOT = Path(__file__).resolve().parent.parent
DATA_FILE = ROOT / "templates" / "observability.yml"
ALERTS_DIR = ROOT / "alerts"
RUNBOOKS_DIR = ROOT / "docs" / "runbooks"
INVOKE = Path(sys.executable).parent / "invoke"


# --- helpers ---------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _own_state_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    """Audit lines of these renders go to a scratch state directory, not .state/local."""
    monkeypatch.setenv("MEMOPS_STATE_DIR", str(tmp_path_factory.mktemp("state")))


def rule_files(base: Path = ALERTS_DIR) -> list[Path]:
    return sorted(base.glob("*.rules.yml"))


def unit_test_files(base: Path = ALERTS_DIR) -> list[Path]:
    return sorted((base / "tests").glob("*.test.yml"))


def all_rules(base: Path = ALERTS_DIR) -> list[dict[str, Any]]:
    rules = []
    for path in rule_files(base):
        for group in yaml.safe_load(path.read_text())["groups"]:
            rules.extend(group["rules"])
    return rules


def render(**raw: Any) -> int:
    """`invoke render` in-process: the same operation through the same runner."""
    return run_operation(RENDER, raw, inventory_spec="local", inventory_given=False)


def run_invoke(*args: str, env_state: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MEMOPS_STATE_DIR": str(env_state)} if env_state else None
    return subprocess.run(
        [str(INVOKE), "render", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )


def copy_templates(tmp_path: Path) -> Path:
    """A scratch copy of templates/ (data file, alert templates, profiles)."""
    target = tmp_path / "templates"
    shutil.copytree(ROOT / "templates", target)
    return target / "observability.yml"


def edit_data(path: Path, change) -> None:
    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text("---\n" + yaml.safe_dump(data, sort_keys=False, width=1000))


def snapshot(directory: Path) -> dict[str, bytes]:
    if not directory.exists():
        return {}
    return {
        p.relative_to(directory).as_posix(): p.read_bytes()
        for p in directory.rglob("*")
        if p.is_file()
    }


# --- promtool ----------------------------------------------------------------------------


def test_rule_files_pass_promtool_lint(promtool: str) -> None:
    files = rule_files()
    assert files, "no alerts/*.rules.yml: run `invoke render`"
    result = subprocess.run(
        [promtool, "check", "rules", "--lint=all", "--lint-fatal", *map(str, files)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_unit_tests_pass(promtool: str) -> None:
    files = unit_test_files()
    assert files, "no alerts/tests/*.test.yml: run `invoke render`"
    result = subprocess.run(
        [promtool, "test", "rules", *map(str, files)],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "FAILED" not in result.stdout + result.stderr


def test_every_alert_has_a_firing_and_a_silent_case() -> None:
    rules = {rule["alert"]: rule for rule in all_rules()}
    firing: dict[str, list[dict[str, Any]]] = {}
    silent: dict[str, int] = {}
    for path in unit_test_files():
        document = yaml.safe_load(path.read_text())
        for case in document["tests"]:
            for check in case["alert_rule_test"]:
                name = check["alertname"]
                if check.get("exp_alerts"):
                    firing.setdefault(name, []).extend(check["exp_alerts"])
                else:
                    silent[name] = silent.get(name, 0) + 1
    assert sorted(firing) == sorted(rules), "alerts without a firing test case"
    assert sorted(silent) == sorted(rules), "alerts without a silent test case"
    for name, expected in firing.items():
        rule = rules[name]
        for alert in expected:
            annotations = alert["exp_annotations"]
            assert annotations["runbook_url"] == rule["annotations"]["runbook_url"]
            assert annotations["summary"] == rule["annotations"]["summary"]
            assert set(annotations) == {"summary", "description", "runbook_url"}
            assert alert["exp_labels"]["severity"] == rule["labels"]["severity"]
            assert "instance" in alert["exp_labels"]
            assert "{{" not in annotations["description"], "description not expanded"


def test_profile_test_renders_short_for_and_its_tests_still_pass(
    promtool: str, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    assert render(profile="test", out=str(out)) == 0
    rules = all_rules(out / "alerts")
    assert rules
    for rule in rules:
        assert duration_seconds(rule["for"]) <= 10, rule["alert"]
    assert next(r for r in rules if r["alert"] == "RedisDown")["for"] == "5s"
    result = subprocess.run(
        [promtool, "test", "rules", *map(str, unit_test_files(out / "alerts"))],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert render(profile="no-such-profile", out=str(tmp_path / "other")) == 2
    assert not (tmp_path / "other").exists()


# --- conventions -----------------------------------------------------------------------


def test_rule_conventions() -> None:
    config = load_config(DATA_FILE)
    prefixes = {c.key: c.alert_prefix for c in config.components.values()}
    rules = all_rules()
    assert len(rules) == len(config.rules)
    for path in rule_files():
        component = path.name.removesuffix(".rules.yml")
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                name = rule["alert"]
                assert re.fullmatch(r"[A-Z][A-Za-z0-9]+", name)
                assert name.startswith(prefixes[component]), name
                assert rule["labels"]["severity"] in SEVERITIES
                summary = rule["annotations"]["summary"]
                assert "{{" not in summary and summary.endswith(".")
                description = rule["annotations"]["description"]
                assert "$value" in description and "{{ $labels.instance }}" in description
                assert re.fullmatch(r"\d+[smhdw]", rule["for"]), rule["for"]


def test_issue_coverage() -> None:
    """The alerts issue #3 asks for, by what they watch."""
    exprs = {rule["alert"]: rule["expr"] for rule in all_rules()}
    wanted = {
        "RedisDown": "redis_up",
        "RedisMemoryNearMaxmemory": "redis_memory_max_bytes",
        "RedisEvictions": "redis_evicted_keys_total",
        "RedisRejectedConnections": "redis_rejected_connections_total",
        "RedisLastBgsaveFailed": "redis_rdb_last_bgsave_status",
        "RedisNoRecentSave": "redis_rdb_last_save_timestamp_seconds",
        "RedisReplicationLinkDown": "redis_master_link_up",
        "PostgresqlDown": "pg_up",
        "PostgresqlConnectionsNearMax": "pg_settings_max_connections",
        "PostgresqlDeadlocks": "pg_stat_database_deadlocks",
        "PostgresqlHighRollbackRatio": "pg_stat_database_xact_rollback",
        "PostgresqlReplicationLag": "pg_replication_lag",
        "PostgresqlExporterScrapeError": "pg_exporter_last_scrape_error",
        "QdrantDown": 'up{job="qdrant"}',
        "QdrantRestServerErrors": 'status=~"5.."',
        "QdrantRestLatencyHigh": "rest_responses_duration_seconds_bucket",
        "QdrantRecoveryMode": "app_status_recovery_mode",
        "MemoryServiceCacheHitRateLow": "martha_cache_hits_total",
        "MemoryServiceRecallSuccessLow": "martha_recall_success_total",
        "MemoryServiceStoreLatencyHigh": "martha_store_duration_seconds_bucket",
        "SupersedeJudgeFailOpenHigh": "martha_judge_fail_open_total",
        "SupersedeJudgeLagHigh": "martha_judge_lag_seconds_bucket",
        "SupersedeStalled": "martha_supersede_total",
        "MemopsHealthFailing": "memops_health_failure_streak",
        "MemopsHealthQueueBacklog": "memops_health_queue_depth",
        "MemopsBackupFailed": "memops_backup_last_run_success",
        "MemopsBackupStale": "memops_backup_last_success_timestamp_seconds",
        "MemopsBackupSkipped": "memops_backup_last_run_skipped",  # issue #22
        "MemopsRestoreDrillFailed": "memops_restore_drill_last_success",
        # issue #25: the replicated tiers (names checked against redis_exporter 1.45 on Redis
        # 7.0 replicas and a Sentinel, postgres_exporter 0.11 on a PostgreSQL 15 standby, and
        # the sources of Patroni 3.0.2 and etcd 3.4)
        "RedisReplicationLagBytes": "redis_connected_slave_offset_bytes",
        "RedisReplicationLagSeconds": "redis_connected_slave_lag_seconds",
        "RedisFailover": 'redis_instance_info{job="redis",role="master"}',
        "RedisSentinelDown": 'redis_up{job="redis-sentinel"}',
        "RedisSentinelQuorumLost": "redis_sentinel_master_ckquorum_status",
        "PostgresqlStandbyNotStreaming": "pg_replication_wal_receiver_streaming",
        "PostgresqlReplicationLagBytes": "pg_stat_replication_pg_wal_lsn_diff",
        "PatroniDown": 'up{job="patroni"}',
        "PatroniNoLeader": "patroni_cluster_unlocked",
        "PatroniFailover": "patroni_postgres_timeline",
        "EtcdMemberDown": 'up{job="etcd"}',
        "EtcdNoLeader": "etcd_server_has_leader",
    }
    for name, needle in wanted.items():
        assert name in exprs, f"missing alert {name}"
        assert needle in exprs[name], f"{name} does not watch {needle}"
    config = load_config(DATA_FILE)
    assert config.rule("MemopsHealthFailing").threshold == 3
    assert config.rule("MemopsHealthQueueBacklog").threshold == 1
    assert config.rule("SupersedeJudgeFailOpenHigh").threshold == 0.05
    assert config.rule("SupersedeJudgeLagHigh").threshold == 300
    assert config.rule("MemoryServiceCacheHitRateLow").threshold == 0.8
    assert config.rule("MemoryServiceRecallSuccessLow").threshold == 0.95
    assert config.rule("RedisNoRecentSave").threshold == 2  # x the RPO
    assert "[5m]" in exprs["RedisEvictions"]  # windows come from the data file


def test_runbook_urls_point_to_existing_runbooks() -> None:
    config = load_config(DATA_FILE)
    index = (RUNBOOKS_DIR / "README.md").read_text()
    for rule in all_rules():
        name = rule["alert"]
        url = rule["annotations"]["runbook_url"]
        assert url == f"{config.runbook_base_url}/{name}.md"
        page = RUNBOOKS_DIR / f"{name}.md"
        assert page.is_file(), f"{url} has no docs/runbooks/{name}.md"
        text = page.read_text()
        for section in ("## Meaning", "## How to confirm", "## How to fix", "```promql"):
            assert section in text, f"{page.name} lacks {section}"
        assert rule["expr"] in text
        assert f"(./{name}.md)" in index


def test_runbook_commands_exist() -> None:
    """`invoke X` in a runbook names a real task (or says it is not available yet)."""
    tasks = set(root_collection().task_names)
    deploy_tags = set()
    for tags in re.findall(r"tags: \[([^\]]*)\]", (ROOT / "playbooks" / "deploy.yml").read_text()):
        deploy_tags.update(tag.strip() for tag in tags.split(","))
    seen_commands = 0
    for page in sorted(RUNBOOKS_DIR.glob("*.md")):
        for item in re.split(r"\n(?=\d+\. )", page.read_text()):
            item = " ".join(item.split())
            for match in re.finditer(
                r"invoke\s+([a-z][\w.]*)((?:\s+--[\w-]+(?:\s+[^\s`]+)?)*)", item
            ):
                task, options = match.group(1), match.group(2)
                seen_commands += 1
                if task not in tasks:
                    assert "when available" in item, f"{page.name}: `invoke {task}` does not exist"
                    continue
                tag = re.search(r"--tags\s+([^\s`]+)", options)
                if tag and not tag.group(1).startswith("<"):
                    assert tag.group(1) in deploy_tags, f"{page.name}: unknown tag {tag.group(1)}"
    assert seen_commands > 30


def test_external_metrics_list_every_non_exporter_metric() -> None:
    config = load_config(DATA_FILE)
    listed = {
        m["name"]: m
        for m in yaml.safe_load((ALERTS_DIR / "external-metrics.yml").read_text())["metrics"]
    }
    for metric in listed.values():
        assert metric["type"] in ("counter", "gauge", "histogram", "summary")
        assert metric["help"] and metric["source"]
    used = set()
    for rule in all_rules():
        used |= alert_render.metric_names(rule["expr"])
    for dashboard in sorted((ROOT / "dashboards").glob("*.json")):
        used |= set(re.findall(r"\b(?:martha_|memops_)[a-z_]+", dashboard.read_text()))
    prefix = config.metric_prefix
    for name in sorted(used):
        if not name.startswith((prefix, "memops_")) or name.startswith(
            alert_render.LIVE_TEXTFILE_PREFIXES
        ):
            continue
        base = re.sub(r"_(bucket|count|sum)$", "", name)
        assert name in listed or base in listed, f"{name} is not in alerts/external-metrics.yml"
    # memops_health_* are live (written by `invoke health`): the names must match the writer
    writer = ROOT / "memops" / "health_metrics.py"
    if writer.exists():
        published = set(re.findall(r"memops_health_[a-z_]+", writer.read_text()))
        health_used = {n for n in used if n.startswith("memops_health_")}
        assert health_used <= published, health_used - published


def test_qdrant_rules_use_metrics_the_standin_exposes() -> None:
    """The stand-in exposes real Qdrant's metric names; the Qdrant rules must find them."""
    metrics = RequestMetrics()
    metrics.observe("POST", "/collections/{name}/points/query", 200, 0.01)
    metrics.observe("POST", "/collections/{name}/points/query", 500, 0.01)
    exposition = metrics.render("qdrant", "1.20.0", 1, 10)
    exposed = set(re.findall(r"^([a-z_]+)[{ ]", exposition, re.MULTILINE))
    assert 'status="500"' in exposition
    for rule in all_rules():
        if rule["labels"]["component"] != "qdrant":
            continue
        for name in alert_render.metric_names(rule["expr"]) - {"up"}:
            assert name in exposed, f"{rule['alert']}: the stand-in does not expose {name}"


# --- invoke render ---------------------------------------------------------------------


def test_render_check_passes_on_committed_output(tmp_path: Path) -> None:
    result = run_invoke("--check", env_state=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_render_check_fails_when_a_rendered_file_was_edited(tmp_path: Path) -> None:
    out = tmp_path / "copy"
    assert render(out=str(out)) == 0
    assert render(check=True, out=str(out)) == 0
    rules = out / "alerts" / "redis.rules.yml"
    rules.write_text(rules.read_text().replace("for: 1m", "for: 2m", 1))
    result = run_invoke("--check", "--out", str(out), env_state=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "alerts/redis.rules.yml (differs)" in result.stderr
    assert "run `invoke render`" in result.stderr
    # a rendered file the data no longer produces is stale too, and a render removes it
    (out / "alerts" / "redis.rules.yml").write_text(rules.read_text())
    orphan = out / "docs" / "runbooks" / "RedisGone.md"
    orphan.write_text((out / "docs" / "runbooks" / "RedisDown.md").read_text())
    assert render(check=True, out=str(out)) == 1
    assert render(out=str(out)) == 0
    assert not orphan.exists()
    assert render(check=True, out=str(out)) == 0


def test_render_is_deterministic(tmp_path: Path) -> None:
    first = render_all(DATA_FILE, tmp_path)
    second = render_all(DATA_FILE, tmp_path)
    assert first == second
    assert all(text.endswith("\n") for text in first.values())


# --- bad input -------------------------------------------------------------------------


def _set_threshold(data: dict[str, Any]) -> None:
    data["rules"]["redis"][1]["threshold"] = "high"


def _set_severity(data: dict[str, Any]) -> None:
    data["rules"]["postgresql"][0]["severity"] = "urgent"


def _drop_runbook_base_url(data: dict[str, Any]) -> None:
    del data["runbook_base_url"]


def _collide(data: dict[str, Any]) -> None:
    data["rules"]["qdrant"][1]["name"] = "QdrantDown"


@pytest.mark.parametrize(
    ("change", "field", "problem"),
    [
        (_set_threshold, "rules.redis[1].threshold", "expected a number, got 'high'"),
        (
            _set_severity,
            "rules.postgresql[0].severity",
            "unknown severity 'urgent' (expected one of critical, warning, info)",
        ),
        (_drop_runbook_base_url, "runbook_base_url", "required"),
        (_collide, "rules.qdrant[1].name", "'QdrantDown' collides with rules.qdrant[0].name"),
    ],
    ids=["wrong-type", "unknown-severity", "missing-runbook-url", "name-collision"],
)
def test_bad_input_is_refused_and_nothing_is_written(
    tmp_path: Path, change, field: str, problem: str
) -> None:
    data_file = copy_templates(tmp_path)
    edit_data(data_file, change)
    out = tmp_path / "out"
    result = run_invoke("--config", str(data_file), "--out", str(out), env_state=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0] == f"memops render: {data_file}: {field}: {problem}"
    assert not out.exists(), "a refused render wrote files"


def _mutations() -> list[tuple[str, Any, str]]:
    def unknown_key(d):
        d["rules"]["redis"][0]["treshold"] = 1

    def bad_for(d):
        d["rules"]["redis"][0]["for"] = "5 minutes"

    def no_prefix(d):
        d["rules"]["redis"][0]["name"] = "DownRedis"

    def lower_after_prefix(d):
        d["rules"]["redis"][0]["name"] = "Redisdown"

    def unused_threshold(d):
        d["rules"]["redis"][0]["threshold"] = 1

    def missing_threshold(d):
        del d["rules"]["redis"][1]["threshold"]

    def bool_threshold(d):
        d["rules"]["redis"][1]["threshold"] = True

    def unknown_window(d):
        d["rules"]["redis"][2]["window"] = "fortnight"

    def unknown_template(d):
        d["rules"]["redis"][0]["template"] = "nope"

    def templated_summary(d):
        d["rules"]["redis"][0]["summary"] = "Redis {{ $labels.instance }} is down."

    def description_without_instance(d):
        d["rules"]["redis"][0]["description"] = "Redis is down ({{ $value }})."

    def unlisted_metric(d):
        d["external_metrics"] = [m for m in d["external_metrics"] if "judge_total" not in m["name"]]

    def later_collision(d):
        d["rules"]["postgresql"][0]["name"] = "PostgresqlDeadlocks"

    def missing_job(d):
        del d["jobs"]["memory-service"]

    def bad_quantile(d):
        d["rules"]["qdrant"][2]["quantile"] = 95

    return [
        ("unknown-key", unknown_key, "rules.redis[0].treshold: unknown key"),
        ("bad-for", bad_for, "rules.redis[0].for: expected a Prometheus duration"),
        ("no-prefix", no_prefix, "rules.redis[0].name: 'DownRedis' must start with"),
        ("lower-after-prefix", lower_after_prefix, "rules.redis[0].name: 'Redisdown' must start"),
        ("unused-threshold", unused_threshold, "rules.redis[0].threshold: not used by expression"),
        (
            "missing-threshold",
            missing_threshold,
            "rules.redis[1].threshold: required by expression",
        ),
        ("bool-threshold", bool_threshold, "rules.redis[1].threshold: expected a number, got True"),
        ("unknown-window", unknown_window, "rules.redis[2].window: unknown window 'fortnight'"),
        (
            "unknown-template",
            unknown_template,
            "rules.redis[0].template: unknown expression 'nope'",
        ),
        ("templated-summary", templated_summary, "rules.redis[0].summary: must be a static"),
        (
            "description-without-instance",
            description_without_instance,
            "rules.redis[0].description: must show",
        ),
        ("unlisted-metric", unlisted_metric, "which external_metrics does not list"),
        (
            "collision-names-both",
            later_collision,
            "rules.postgresql[2].name: 'PostgresqlDeadlocks' collides with "
            "rules.postgresql[0].name",
        ),
        ("missing-job", missing_job, "jobs: missing memory-service"),
        (
            "bad-quantile",
            bad_quantile,
            "rules.qdrant[2].quantile: expected a number between 0 and 1",
        ),
    ]


@pytest.mark.parametrize(
    ("change", "needle"),
    [(change, needle) for _, change, needle in _mutations()],
    ids=[name for name, _, _ in _mutations()],
)
def test_more_bad_input_is_refused_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], change, needle: str
) -> None:
    data_file = copy_templates(tmp_path)
    edit_data(data_file, change)
    out = tmp_path / "out"
    # an earlier render in the output directory stays exactly as it was
    assert render(out=str(out)) == 0
    before = snapshot(out)
    capsys.readouterr()
    assert render(config=str(data_file), out=str(out)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith(f"memops render: {data_file}: ")
    assert needle in err[0]
    assert snapshot(out) == before


def test_bad_profile_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data_file = copy_templates(tmp_path)
    profile = data_file.parent / "profiles" / "test.yml"
    profile.write_text("---\nmax_for: 10s\nrules:\n  RedisGone:\n    for: 5s\n")
    assert render(config=str(data_file), profile="test", out=str(tmp_path / "out")) == 2
    err = capsys.readouterr().err.strip()
    assert f"{profile}: rules.RedisGone: no rule named 'RedisGone'" in err
    assert not (tmp_path / "out").exists()


def test_alert_pages_link_their_procedures_and_unknown_ones_are_refused(tmp_path: Path) -> None:
    config = load_config(DATA_FILE)
    index = (RUNBOOKS_DIR / "README.md").read_text()
    assert config.procedures, "no procedure pages are listed"
    for name, procedure in config.procedures.items():
        assert (RUNBOOKS_DIR / f"{name}.md").is_file(), f"procedure {name} has no page"
        assert f"[{procedure.title}](./{name}.md)" in index
    linked = [rule for rule in config.rules if rule.runbook.procedures]
    assert linked
    for rule in linked:
        text = (RUNBOOKS_DIR / f"{rule.name}.md").read_text()
        for name in rule.runbook.procedures:
            assert f"(./{name}.md)" in text, f"{rule.name} does not link {name}"

    broken = DATA_FILE.read_text().replace(
        "procedures: [memory-rebuild]", "procedures: [no-such-page]", 1
    )
    copy = tmp_path / "observability.yml"
    copy.write_text(broken)
    with pytest.raises(ConfigError, match="unknown procedure no-such-page"):
        load_config(copy)
