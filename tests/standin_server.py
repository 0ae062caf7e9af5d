"""Start the Qdrant stand-in as a real subprocess on a free loopback port, for tests."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import yaml

from memops.deploy.targets import QdrantTarget

START_TIMEOUT_S = 30


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RunningStandin:
    url: str
    api_key: str
    directory: Path
    process: subprocess.Popen[bytes]

    @property
    def target(self) -> QdrantTarget:
        return QdrantTarget(name="qdrant", url=self.url, api_key=self.api_key)


@contextlib.contextmanager
def running_standin(
    directory: Path, api_key: str = "standin-test-key", *, jwt_rbac: bool = True
) -> Iterator[RunningStandin]:
    """A stand-in with an API key and, as memops deploys it, JWT RBAC on."""
    port = free_port()
    config = {
        "log_level": "WARN",
        "telemetry_disabled": True,
        "storage": {
            "storage_path": str(directory / "storage"),
            "snapshots_path": str(directory / "snapshots"),
        },
        "service": {
            "host": "127.0.0.1",
            "http_port": port,
            "grpc_port": None,
            "api_key": api_key,
            "jwt_rbac": jwt_rbac,
        },
    }
    config_path = directory / "config.yaml"
    config_path.write_text(yaml.safe_dump(config))
    server = RunningStandin(f"http://127.0.0.1:{port}", api_key, directory, _start(directory))
    try:
        yield server
    finally:
        stop(server)


def _start(directory: Path) -> subprocess.Popen[bytes]:
    """Start the stand-in of ``directory``/config.yaml (stderr appended to standin.log)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("QDRANT__")}
    with open(directory / "standin.log", "ab") as log:  # the child keeps its own descriptor
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "qdrant_standin",
                "--config-path",
                str(directory / "config.yaml"),
            ],
            stderr=log,
            env=env,
        )
    config = yaml.safe_load((directory / "config.yaml").read_text())
    url = f"http://127.0.0.1:{config['service']['http_port']}"
    try:
        _wait_ready(process, url, directory)
    except BaseException:
        process.kill()
        process.wait()
        raise
    return process


def _wait_ready(process: subprocess.Popen[bytes], url: str, directory: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"stand-in exited: {(directory / 'standin.log').read_text()}")
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return
        if time.monotonic() > deadline:
            raise RuntimeError("stand-in did not get ready")
        time.sleep(0.1)


def stop(server: RunningStandin) -> None:
    """Stop the stand-in (SIGTERM): its port refuses connections until ``start_again``."""
    if server.process.poll() is None:
        server.process.terminate()
        server.process.wait(timeout=30)


def start_again(server: RunningStandin) -> None:
    """Start a stopped stand-in again on the same port, with the same storage."""
    server.process = _start(server.directory)
