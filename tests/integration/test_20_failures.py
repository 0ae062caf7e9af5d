"""Failure handling against the real test stack: outages, bad input, bad credentials."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
from pathlib import Path

import pytest
from integration_helpers import REDIS_PIDFILE, TEST_INVENTORY, DeployedStack, invoke, port_open

from memops.files import write_private_atomic

pytestmark = pytest.mark.integration


def _health(state_dir: Path | None = None) -> tuple[int, dict]:
    env = {"MEMOPS_STATE_DIR": str(state_dir)} if state_dir else None
    run = invoke("health", "--inventory", TEST_INVENTORY, "--json", "--timeout", "1", env=env)
    return run.returncode, run.json()


def test_stopped_redis_turns_failing_after_the_streak_and_recovers(
    deployed_stack: DeployedStack, tmp_path: Path
) -> None:
    state_dir = tmp_path / "state"
    state_dir.mkdir(mode=0o700)
    shutil.copy2(deployed_stack.state_dir / "targets.json", state_dir / "targets.json")
    redis_port = deployed_stack.targets.components["redis"].port  # type: ignore[attr-defined]

    subprocess.run(
        ["start-stop-daemon", "--stop", "--pidfile", REDIS_PIDFILE, "--retry", "TERM/10/KILL/5"],
        check=True,
    )
    try:
        assert not port_open("127.0.0.1", redis_port)
        cycles = [_health(state_dir) for _ in range(3)]
    finally:
        restart = invoke("deploy", "--inventory", TEST_INVENTORY, "--tags", "redis", "--json")
    assert restart.returncode == 0, restart.stderr

    codes = [code for code, _ in cycles]
    states = [snapshot["state"] for _, snapshot in cycles]
    assert states == ["degraded", "degraded", "failing"]
    assert codes == [1, 1, 2]
    last = cycles[-1][1]
    assert last["failure_streak"] == 3 and last["last_cycle_failed"] is True
    assert last["queue_depth"] == 1
    redis_health = last["components"]["redis"]
    assert redis_health["state"] == "failing"
    assert "connect_refused" in redis_health["reason_codes"]
    assert last["components"]["postgresql"]["state"] == "healthy"

    events = [
        json.loads(line) for line in (state_dir / "runtime-events.jsonl").read_text().splitlines()
    ]
    assert "retryable_failures_observed" in events[0]["reason_codes"]
    assert "case_processing_failed" in events[2]["reason_codes"]
    assert "retry_attempted" in events[0]["reason_codes"]

    code, recovered = _health(state_dir)
    assert code == 0 and recovered["state"] == "healthy"
    assert recovered["failure_streak"] == 0 and recovered["last_cycle_failed"] is False
    stored = json.loads((state_dir / "state.json").read_text())
    assert stored["failure_streak"] == 0 and stored["health_state"] == "healthy"
    last_event = json.loads((state_dir / "runtime-events.jsonl").read_text().splitlines()[-1])
    assert "healthy_cycle" in last_event["reason_codes"]


def test_wrong_password_is_reported_as_auth_failed(
    deployed_stack: DeployedStack, tmp_path: Path
) -> None:
    targets = json.loads((deployed_stack.state_dir / "targets.json").read_text())
    targets["components"]["redis"]["password"] = "not-the-password"
    targets["components"]["postgresql"]["password"] = "not-the-password"
    write_private_atomic(tmp_path / "targets.json", json.dumps(targets))

    code, snapshot = _health(tmp_path)

    assert code == 1  # first failing cycle: degraded, not yet failing
    for name in ("redis", "postgresql"):
        component = snapshot["components"][name]
        assert component["state"] == "degraded"
        assert "auth_failed" in component["reason_codes"]
    assert snapshot["components"]["qdrant"]["state"] == "healthy"


def test_unknown_inventory_is_one_line_and_exit_2() -> None:
    run = invoke("deploy", "--inventory", "no-such-inventory")

    assert run.returncode == 2
    assert run.stderr.strip().count("\n") == 0
    assert "inventory 'no-such-inventory' not found" in run.stderr


def test_malformed_group_vars_is_refused_before_ansible_runs(tmp_path: Path) -> None:
    inventory = tmp_path / "broken"
    shutil.copytree(TEST_INVENTORY, inventory)
    variables = inventory / "group_vars" / "all" / "vars.yml"
    variables.write_text("redis_port: [16379\nredis_bind: x\n")

    run = invoke("deploy", "--inventory", str(inventory), env={"MEMOPS_STATE_DIR": str(tmp_path)})

    assert run.returncode == 2
    line = run.stderr.strip()
    assert line.count("\n") == 0
    assert "group_vars/all/vars.yml: malformed YAML at line" in line
    assert not (tmp_path / "logs").exists(), "ansible must not have run"


def test_unreachable_host_is_named_in_one_line(tmp_path: Path) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        free_port = closed.getsockname()[1]
    inventory = tmp_path / "unreachable.yml"
    inventory.write_text(
        "---\nall:\n  children:\n    redis:\n      hosts:\n        ghost:\n"
        "          ansible_host: 127.0.0.1\n"
        f"          ansible_port: {free_port}\n"
        "          ansible_connection: ssh\n"
    )

    run = invoke(
        "deploy", "--inventory", str(inventory), "--json", env={"MEMOPS_STATE_DIR": str(tmp_path)}
    )

    assert run.returncode == 1
    document = run.json()
    assert document["ok"] is False
    assert document["error"].startswith("ghost: unreachable")
    assert run.stderr.strip().count("\n") == 0


def test_taken_port_stops_the_deploy_with_one_line(tmp_path: Path) -> None:
    inventory = tmp_path / "porttaken"
    shutil.copytree(TEST_INVENTORY, inventory)
    group_vars = inventory / "group_vars" / "all" / "vars.yml"
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        text = group_vars.read_text().replace("memops-test", "memops-porttaken")
        group_vars.write_text(text.replace("redis_port: 26379", f"redis_port: {port}"))

        run = invoke(
            "deploy",
            "--inventory",
            str(inventory),
            "--tags",
            "redis",
            "--json",
            env={"MEMOPS_STATE_DIR": str(tmp_path / "state")},
        )
    try:
        assert run.returncode == 1
        error = run.json()["error"]
        assert f"port {port}" in error and "already in use" in error
        assert run.stderr.strip().count("\n") == 0
    finally:
        for leftover in Path("/etc/redis").glob("memops-porttaken*"):
            leftover.unlink()
        shutil.rmtree("/var/lib/redis/memops-porttaken", ignore_errors=True)
