"""The multihost fixtures: one lab of four container hosts and the stack deployed on it.

Made once per session and removed at its end (`invoke lab.down`): the lab's
containers, network, proxy, private dockerd and files, and the cron entries or
units the deploy made. The image stays in the cache, so the next session starts
in about a minute instead of building it again.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from lab_helpers import (
    HA_LAB_HOME,
    HA_LAB_UP,
    LAB_UP,
    Lab,
    LabStack,
    lab_from,
    lab_invoke,
)

# Short intervals and the `test` alert profile, as the single-host test stack has them,
# so that a stopped host's alert reaches the webhook in seconds.
TEST_SETTINGS = {
    "memops_probe_wait": 60,
    # The workload generator writes {prefix}:memory:{tenant}:… keys, as the memory service does.
    "redis_app_key_prefix": "memops",
    "memops_alert_profile": "test",
    "prometheus_rule_files": (
        "{{ query('ansible.builtin.fileglob', memops_state_dir ~ "
        "'/rendered/test/alerts/*.rules.yml') | sort }}"
    ),
    "prometheus_scrape_interval": "2s",
    "prometheus_evaluation_interval": "2s",
    "alertmanager_group_wait": "1s",
    "alertmanager_group_interval": "1s",
    "alertmanager_repeat_interval": "1m",
    "alertmanager_resolve_timeout": "1m",
}


@pytest.fixture(scope="session")
def lab() -> Iterator[Lab]:
    up = lab_invoke(*LAB_UP)
    try:
        assert up.returncode == 0, f"lab.up failed: {up.stderr.strip()}"
        made = lab_from(up.json())
        overrides = Path(made.inventory) / "group_vars" / "all" / "test.yml"
        overrides.write_text("---\n" + yaml.safe_dump(TEST_SETTINGS), encoding="utf-8")
        yield made
    finally:
        down = lab_invoke("lab.down", "--json")
        assert down.returncode == 0, down.stderr


@pytest.fixture(scope="session")
def lab_stack(lab: Lab) -> LabStack:
    # First a dry run on the blank hosts: it must pass and change nothing.
    check = lab_invoke("deploy", "--inventory", lab.inventory, "--check", "--json")
    assert check.returncode == 0, f"deploy --check failed: {check.stderr.strip()}"
    assert check.json()["check"] is True
    for host in lab.hosts:
        units = lab.ssh(host, "ls /etc/systemd/system").stdout.split()
        assert not [u for u in units if "memops" in u], (host, units)
    run = lab_invoke("deploy", "--inventory", lab.inventory, "--json")
    assert run.returncode == 0, f"deploy failed: {run.stderr.strip()}\n{run.stdout[-3000:]}"
    document = run.json()
    return LabStack(lab, document, float(document.get("duration_s", 0)))


@pytest.fixture(scope="session")
def ha_lab() -> Iterator[Lab]:
    """The replicated shape: Redis + Sentinel and PostgreSQL + etcd on three hosts."""
    up = lab_invoke(*HA_LAB_UP, home=HA_LAB_HOME)
    try:
        assert up.returncode == 0, f"lab.up failed: {up.stderr.strip()}"
        made = lab_from(up.json(), home=HA_LAB_HOME)
        overrides = Path(made.inventory) / "group_vars" / "all" / "test.yml"
        overrides.write_text("---\n" + yaml.safe_dump(TEST_SETTINGS), encoding="utf-8")
        yield made
    finally:
        down = lab_invoke("lab.down", "--json", home=HA_LAB_HOME)
        assert down.returncode == 0, down.stderr


@pytest.fixture(scope="session")
def ha_stack(ha_lab: Lab) -> LabStack:
    run = lab_invoke("deploy", "--inventory", ha_lab.inventory, "--json", home=HA_LAB_HOME)
    assert run.returncode == 0, f"deploy failed: {run.stderr.strip()}\n{run.stdout[-3000:]}"
    document = run.json()
    return LabStack(ha_lab, document, float(document.get("duration_s", 0)))
