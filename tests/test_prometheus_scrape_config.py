"""The prometheus role's scrape configuration for a single-node and a replicated inventory.

The role's template is rendered by Ansible itself (the role's defaults and vars, a throwaway
inventory) and checked with ``promtool check config``. A single node keeps the jobs it always
had; a replicated inventory scrapes every Redis node and Sentinel through redis_exporter's
``/scrape?target=``, Patroni's REST API where ``postgresql_ha_engine`` is patroni, and every
etcd member.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from memops.paths import PROJECT_DIR

ROLE = PROJECT_DIR / "roles" / "prometheus"
PROMTOOL = shutil.which("promtool", path=f"{Path(sys.executable).parent}:{os.environ['PATH']}")

SINGLE: dict[str, Any] = {
    "monitoring": {"hosts": {"mon": {"ansible_connection": "local"}}},
    "redis": {"hosts": {"mon": {}}},
    "postgresql": {"hosts": {"mon": {}}},
}


def _replicated() -> dict[str, Any]:
    redis = {f"r{i}": {"ansible_host": f"10.0.1.{i}", "redis_bind": "0.0.0.0"} for i in (1, 2, 3)}
    postgresql = {
        f"p{i}": {
            "ansible_host": f"10.0.2.{i}",
            "postgresql_listen_addresses": [f"10.0.2.{i}"],
            "postgresql_port": 5432,
            "postgresql_ha_engine": "patroni",
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


def _render(tmp_path: Path, groups: dict[str, Any]) -> dict[str, Any]:
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(yaml.safe_dump({"all": {"children": groups}}))
    out = tmp_path / "prometheus.yml"
    playbook = tmp_path / "render.yml"
    playbook.write_text(
        yaml.safe_dump(
            [
                {
                    "hosts": "mon",
                    "gather_facts": False,
                    "vars_files": [str(ROLE / "defaults/main.yml"), str(ROLE / "vars/main.yml")],
                    "tasks": [
                        {
                            "name": "Render the scrape configuration",
                            "ansible.builtin.template": {
                                "src": str(ROLE / "templates/prometheus.yml.j2"),
                                "dest": str(out),
                                "mode": "0600",
                            },
                        }
                    ],
                }
            ]
        )
    )
    done = subprocess.run(
        [str(Path(sys.executable).with_name("ansible-playbook")), "-i", str(inventory),
         str(playbook), "-e", f"ansible_python_interpreter={sys.executable}"],
        cwd=PROJECT_DIR, capture_output=True, text=True, timeout=180, check=False,
        env={**os.environ, "ANSIBLE_LOCAL_TEMP": str(tmp_path / "ansible-tmp")},
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    if PROMTOOL is not None:
        check = subprocess.run(
            [PROMTOOL, "check", "config", "--syntax-only", str(out)],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert check.returncode == 0, check.stdout + check.stderr
    config = yaml.safe_load(out.read_text())
    return {job["job_name"]: job for job in config["scrape_configs"]}


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
