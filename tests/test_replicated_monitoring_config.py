"""The monitoring roles' configuration for a single-node and a replicated inventory.

Ansible itself evaluates the roles' defaults and vars against a throwaway inventory (no host is
touched): the prometheus role's scrape configuration, checked with ``promtool check config``,
and the exporters the redis_exporter and postgres_exporter roles run. A single node keeps the
jobs and the one exporter each it always had; a replicated inventory scrapes every Redis node
and Sentinel through redis_exporter's ``/scrape?target=``, one postgres_exporter per node,
Patroni's REST API where ``postgresql_ha_engine`` is patroni, and every etcd member.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from memops.paths import PROJECT_DIR

ROLES = PROJECT_DIR / "roles"
PROMTOOL = shutil.which("promtool", path=f"{Path(sys.executable).parent}:{os.environ['PATH']}")

SINGLE: dict[str, Any] = {
    "monitoring": {"hosts": {"mon": {"ansible_connection": "local"}}},
    "redis": {"hosts": {"mon": {"redis_monitor_password": "m"}}},
    "postgresql": {"hosts": {"mon": {"postgresql_monitor_password": "m"}}},
}


def _replicated() -> dict[str, Any]:
    redis = {
        f"r{i}": {
            "ansible_host": f"10.0.1.{i}",
            "redis_bind": "0.0.0.0",
            "redis_monitor_password": "m",
            "redis_password": "admin",
        }
        for i in (1, 2, 3)
    }
    postgresql = {
        f"p{i}": {
            "ansible_host": f"10.0.2.{i}",
            "postgresql_listen_addresses": [f"10.0.2.{i}"],
            "postgresql_port": 5432,
            "postgresql_ha_engine": "patroni",
            "postgresql_monitor_password": "m",
        }
        for i in (1, 2)
    }
    return {
        "monitoring": {"hosts": {"mon": {"ansible_connection": "local"}}},
        "redis": {"hosts": redis},
        "sentinel": {"hosts": {name: {} for name in redis}, "vars": {"redis_sentinel_port": 26380}},
        "postgresql": {"hosts": postgresql},
        "etcd": {"hosts": {f"e{i}": {"etcd_address": f"10.0.3.{i}"} for i in (1, 2, 3)}},
    }


def _run(tmp_path: Path, groups: dict[str, Any], role: str, tasks: list[Any]) -> None:
    """Run ``tasks`` on host mon with ``role``'s defaults and vars, against ``groups``."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(yaml.safe_dump({"all": {"children": groups}}))
    play = {
        "hosts": "mon",
        "gather_facts": False,
        "vars_files": [
            str(ROLES / role / "defaults/main.yml"),
            str(ROLES / role / "vars/main.yml"),
        ],
        "tasks": tasks,
    }
    playbook = tmp_path / "play.yml"
    playbook.write_text(yaml.safe_dump([play]))
    done = subprocess.run(
        [str(Path(sys.executable).with_name("ansible-playbook")), "-i", str(inventory),
         str(playbook), "-e", f"ansible_python_interpreter={sys.executable}"],
        cwd=PROJECT_DIR, capture_output=True, text=True, timeout=180, check=False,
        env={**os.environ, "ANSIBLE_LOCAL_TEMP": str(tmp_path / "ansible-tmp")},
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


def _render(tmp_path: Path, groups: dict[str, Any]) -> dict[str, Any]:
    out = tmp_path / "prometheus.yml"
    template = {"src": str(ROLES / "prometheus/templates/prometheus.yml.j2"), "dest": str(out)}
    _run(
        tmp_path, groups, "prometheus", [{"ansible.builtin.template": template | {"mode": "0600"}}]
    )
    if PROMTOOL is not None:
        check = subprocess.run(
            [PROMTOOL, "check", "config", "--syntax-only", str(out)],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert check.returncode == 0, check.stdout + check.stderr
    config = yaml.safe_load(out.read_text())
    return {job["job_name"]: job for job in config["scrape_configs"]}


def _evaluate(tmp_path: Path, groups: dict[str, Any], role: str, expression: str) -> Any:
    """``expression`` evaluated by Ansible with ``role``'s defaults and vars."""
    out = tmp_path / "value.json"
    content = "{{ " + expression + " | to_json }}"
    _run(
        tmp_path,
        groups,
        role,
        [{"ansible.builtin.copy": {"content": content, "dest": str(out), "mode": "0600"}}],
    )
    return json.loads(out.read_text())


def _targets(job: dict[str, Any]) -> list[tuple[str, str, str | None]]:
    return [
        (target, group["labels"]["instance"], group["labels"].get("__param_target"))
        for group in job["static_configs"]
        for target in group["targets"]
    ]


def test_a_single_node_keeps_its_jobs(tmp_path: Path) -> None:
    jobs = _render(tmp_path, SINGLE)
    assert set(jobs) == {"prometheus", "alertmanager", "node", "redis", "postgresql"}
    assert "metrics_path" not in jobs["redis"]
    assert _targets(jobs["redis"]) == [("127.0.0.1:19121", "mon:16379", None)]
    assert _targets(jobs["postgresql"]) == [("127.0.0.1:19187", "mon:15432", None)]


def test_a_replicated_stack_scrapes_every_node(tmp_path: Path) -> None:
    jobs = _render(tmp_path, _replicated())
    assert {"redis", "redis-sentinel", "patroni", "etcd"} <= set(jobs)
    assert jobs["redis"]["metrics_path"] == jobs["redis-sentinel"]["metrics_path"] == "/scrape"
    assert _targets(jobs["redis"]) == [
        ("127.0.0.1:19121", f"r{i}:16379", f"redis://10.0.1.{i}:16379") for i in (1, 2, 3)
    ]
    assert _targets(jobs["redis-sentinel"]) == [
        ("127.0.0.1:19122", f"r{i}:26380", f"redis://10.0.1.{i}:26380") for i in (1, 2, 3)
    ]
    assert _targets(jobs["postgresql"]) == [
        (f"127.0.0.1:{19187 + i}", f"p{i + 1}:5432", None) for i in (0, 1)
    ]
    assert _targets(jobs["patroni"]) == [(f"10.0.2.{i}:8008", f"p{i}:8008", None) for i in (1, 2)]
    assert _targets(jobs["etcd"]) == [(f"10.0.3.{i}:2379", f"e{i}:2379", None) for i in (1, 2, 3)]


def test_patroni_is_scraped_only_where_it_runs(tmp_path: Path) -> None:
    groups = _replicated()
    for host in groups["postgresql"]["hosts"].values():
        host["postgresql_ha_engine"] = "none"
    del groups["etcd"]
    jobs = _render(tmp_path, groups)
    assert "patroni" not in jobs and "etcd" not in jobs


def _postgres_exporters(tmp_path: Path, groups: dict[str, Any]) -> list[list[Any]]:
    """[service, port, db host, db port] of every exporter, as tasks/main.yml loops over them."""
    out = tmp_path / "pg.json"
    record = (
        "{{ seen | default([]) + [[_postgres_exporter_service_name,"
        " _postgres_exporter_listen_port | int,"
        " postgres_exporter_db_host, postgres_exporter_db_port | int]] }}"
    )
    loop = {"loop_var": "_postgres_exporter_node", "index_var": "_postgres_exporter_index"}
    tasks = [
        {"ansible.builtin.set_fact": {"seen": record},
         "loop": "{{ _postgres_exporter_nodes }}", "loop_control": loop},
        {"ansible.builtin.copy":
            {"content": "{{ seen | to_json }}", "dest": str(out), "mode": "0600"}},
    ]  # fmt: skip
    _run(tmp_path, groups, "postgres_exporter", tasks)
    return json.loads(out.read_text())


def test_one_postgres_exporter_per_node(tmp_path: Path) -> None:
    assert _postgres_exporters(tmp_path / "single", SINGLE) == [
        ["memops-postgres-exporter-memops", 19187, "127.0.0.1", 15432]
    ]
    assert _postgres_exporters(tmp_path / "replicated", _replicated()) == [
        ["memops-postgres-exporter-memops", 19187, "10.0.2.1", 5432],
        ["memops-postgres-exporter-memops-p2", 19188, "10.0.2.2", 5432],
    ]


def test_the_sentinels_get_their_own_redis_exporter(tmp_path: Path) -> None:
    plan = "_redis_exporter_instances | map(attribute='name') | list"
    assert _evaluate(tmp_path / "single", SINGLE, "redis_exporter", plan) == ["memops"]
    instances = _evaluate(
        tmp_path / "replicated", _replicated(), "redis_exporter", "_redis_exporter_instances"
    )
    nodes, sentinels = instances
    assert (nodes["name"], nodes["port"]) == ("memops", 19121)
    assert nodes["environment"] == {"REDIS_USER": "memops-monitor", "REDIS_PASSWORD": "m"}
    assert (sentinels["name"], sentinels["port"]) == ("memops-sentinel", 19122)
    # Sentinel has no ACL user: its password (redis_sentinel_password, else redis_password)
    assert sentinels["environment"] == {"REDIS_PASSWORD": "admin"}
    assert "-redis.addr=redis://10.0.1.1:26380" in sentinels["command"]
    assert "-web.listen-address=127.0.0.1:19122" in sentinels["command"]
