"""Helpers of the integration tests: run invoke, manage daemons, look at ports.

The test stack uses tests/inventories/test (instance memops-test, ports 26379,
25432, 26333), so it never touches what `invoke up` deployed. Tests drive the
same commands users type, through subprocess, and read their JSON output.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from memops.clients import StackClients
from memops.paths import PROJECT_DIR
from memops.targets import Targets, load_targets

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
