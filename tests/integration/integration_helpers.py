"""Helpers of the integration tests: run invoke, manage daemons, look at ports.

The test stack uses tests/inventories/test (instance memops-test, ports 26379,
25432, 26333), so it never touches what `invoke up` deployed. Tests drive the
same commands users type, through subprocess, and read their JSON output.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from memops.backup.postgresql.tier import PostgresTier
from memops.clients import StackClients, postgres_connect, redis_client
from memops.deploy.targets import PostgresTarget, RedisTarget, Targets, load_targets
from memops.paths import PROJECT_DIR
from memops.schema import owner as audit_owner

INVENTORIES = PROJECT_DIR / "tests" / "inventories"
TEST_INVENTORY = str(INVENTORIES / "test")
BLANK_INVENTORY = str(INVENTORIES / "blank")
INVOKE = str(Path(sys.executable).with_name("invoke"))
# the test stack's Redis, started by the redis role as a pidfile daemon on these machines
REDIS_PIDFILE = "/run/redis-memops-test.pid"


@dataclass(frozen=True)
class Run:
    returncode: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


def invoke(*args: str, env: dict[str, str] | None = None, timeout: float = 900) -> Run:
    """Run `invoke ARGS…` from the project directory, as a user or a CI job would."""
    completed = subprocess.run(
        [INVOKE, *args],
        cwd=PROJECT_DIR,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return Run(completed.returncode, completed.stdout, completed.stderr)


def pidfile_daemon(action: str, pidfile: str) -> None:
    """Stop or check a daemon the roles started with start-stop-daemon."""
    argv = ["start-stop-daemon", f"--{action}", "--pidfile", pidfile]
    if action == "stop":
        argv += ["--retry", "TERM/10/KILL/5", "--remove-pidfile"]
    subprocess.run(argv, check=True)


@dataclass(frozen=True)
class DeployedStack:
    state_dir: Path
    first_deploy: dict[str, Any]

    @property
    def targets(self) -> Targets:
        return load_targets(self.state_dir)

    @property
    def clients(self) -> StackClients:
        """Redis, PostgreSQL and Qdrant clients from the deployed targets (memops.clients)."""
        return StackClients(self.targets)


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


# The monitoring logins the roles create (defaults of redis_monitor_user and
# postgresql_monitor_user); their passwords are generated into the state directory.
REDIS_MONITOR_USER = "memops-monitor"
POSTGRES_MONITOR_USER = "memops_monitor"


def secret(state_dir: Path, name: str) -> str:
    """A password the inventory generated into ``state_dir/secrets`` (Ansible's password lookup)."""
    return (state_dir / "secrets" / name).read_text(encoding="utf-8").split()[0]


def assert_redis_monitor_is_least_privilege(target: RedisTarget, state_dir: Path) -> None:
    """The exporter's ACL user reads server statistics and nothing else: no keys, no CONFIG."""
    import redis

    admin = redis_client(target, timeout_s=5)
    admin.set("memops-acl-probe:key", b"secret value", ex=60)
    monitor = redis_client(
        dataclasses.replace(
            target,
            username=REDIS_MONITOR_USER,
            password=secret(state_dir, "redis_monitor_password"),
        ),
        timeout_s=5,
    )
    assert monitor.ping() is True
    assert "redis_version" in monitor.info("server")
    denied = {
        "GET": lambda: monitor.get("memops-acl-probe:key"),
        "SET": lambda: monitor.set("memops-acl-probe:key", b"overwritten"),
        "FLUSHALL": monitor.flushall,
        "CONFIG GET": lambda: monitor.config_get("requirepass"),
        "KEYS": lambda: monitor.keys("*"),
    }
    for command, call in denied.items():
        try:
            call()
        except redis.exceptions.NoPermissionError:
            continue
        raise AssertionError(f"{REDIS_MONITOR_USER} may run {command}")
    assert admin.get("memops-acl-probe:key") == b"secret value"


def migrate_cli(target: PostgresTarget, *args: str) -> subprocess.CompletedProcess[str]:
    """Run `python -m memops migrate ARGS…` against ``target``, as the postgresql role does."""
    env = {
        **os.environ,
        "MEMOPS_PG_HOST": target.host,
        "MEMOPS_PG_PORT": str(target.port),
        "MEMOPS_PG_DBNAME": target.dbname,
        "MEMOPS_PG_USER": target.user,
        "MEMOPS_PG_PASSWORD": target.password or "",
    }
    return subprocess.run(
        [sys.executable, "-m", "memops", "migrate", *args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


@contextlib.contextmanager
def audit_owner_lent(stack: DeployedStack) -> Iterator[None]:
    """The application role holds memops_audit_owner inside the block, as while the deploy
    migrates (migration 0004 up and down need it); the superuser lends it over the socket."""
    target = stack.targets.components["postgresql"]
    assert isinstance(target, PostgresTarget)
    deployment = dict(stack.targets.deployment.get("postgresql") or {})
    admin = PostgresTier.from_deployment(target, deployment).admin
    with postgres_connect(admin) as superuser, audit_owner.lent(superuser, target.user):
        yield
