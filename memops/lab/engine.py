"""The Docker engine the lab runs on: the user's own, or a private one of the lab's.

The user's engine (``DOCKER_HOST`` or the default socket) is used when it answers. Where
there is none, the lab starts ``dockerd`` from its unpacked Debian packages with its own
data root (in the cache, so built images survive ``lab.down``), its own socket and pid
file, no iptables rules and no default bridge: it touches nothing of the machine's.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import docker
from docker.errors import DockerException

from memops.errors import Failed
from memops.lab.debian_tools import ensure_tools, tool_path

DEFAULT_SOCKET = Path("/var/run/docker.sock")
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0


class EngineError(Failed):
    """No Docker engine could be reached or started."""


@dataclass(frozen=True)
class Engine:
    client: docker.DockerClient
    private: bool  # the lab started this dockerd and stops it when its last container goes
    socket: str


def private_run_dir(cache: Path) -> Path:
    """The private engine's socket, pid file and exec root: short (sockets allow 108 bytes),
    one per cache, so two checkouts on one machine run two engines."""
    digest = hashlib.sha256(str(cache.resolve()).encode()).hexdigest()[:10]
    return Path("/run/memops-lab") / digest


def _answering(base_url: str) -> docker.DockerClient | None:
    try:
        client = docker.DockerClient(base_url=base_url, timeout=30)
        client.ping()
    except DockerException:
        return None
    return client


def find_engine(cache: Path) -> Engine | None:
    """The engine the lab uses when one already answers, else None."""
    if os.environ.get("DOCKER_HOST"):
        base_url = os.environ["DOCKER_HOST"]
        client = _answering(base_url)
        if client is None:
            raise EngineError(f"lab: DOCKER_HOST={base_url} does not answer")
        return Engine(client, private=False, socket=base_url)
    private_socket = private_run_dir(cache) / "docker.sock"
    if private_socket.exists():
        client = _answering(f"unix://{private_socket}")
        if client is not None:
            return Engine(client, private=True, socket=f"unix://{private_socket}")
    if DEFAULT_SOCKET.exists():
        client = _answering(f"unix://{DEFAULT_SOCKET}")
        if client is not None:
            return Engine(client, private=False, socket=f"unix://{DEFAULT_SOCKET}")
    return None


def start_private_engine(cache: Path, log_file: Path) -> Engine:
    """Start the lab's own dockerd and wait until it answers."""
    tools = ensure_tools(cache)
    run_dir = private_run_dir(cache)
    run_dir.mkdir(parents=True, exist_ok=True)
    socket = run_dir / "docker.sock"
    data_root = cache / "engine"
    data_root.mkdir(parents=True, exist_ok=True)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    argv = [
        str(tools / "usr" / "sbin" / "dockerd"),
        "--data-root",
        str(data_root),
        "--exec-root",
        str(run_dir / "exec"),
        "--host",
        f"unix://{socket}",
        "--pidfile",
        str(run_dir / "docker.pid"),
        "--iptables=false",
        "--ip6tables=false",
        "--ip-masq=false",
        "--bridge=none",
        "--userland-proxy=false",
    ]
    with log_file.open("ab") as log:
        subprocess.Popen(
            argv,
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "PATH": tool_path(tools)},
            start_new_session=True,  # outlives the invoke that started it, until lab.down
        )
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        client = _answering(f"unix://{socket}") if socket.exists() else None
        if client is not None:
            return Engine(client, private=True, socket=f"unix://{socket}")
        time.sleep(0.5)
    raise EngineError(
        f"lab: the private dockerd did not answer in {START_TIMEOUT_S:.0f} s; see {log_file}"
    )


def engine_for_up(cache: Path, log_file: Path) -> Engine:
    return find_engine(cache) or start_private_engine(cache, log_file)


def stop_private_engine(cache: Path) -> bool:
    """Stop the lab's own dockerd (and the containerd it started); True when one ran."""
    run_dir = private_run_dir(cache)
    pidfile = run_dir / "docker.pid"
    try:
        pid = int(pidfile.read_text(encoding="utf-8").strip())
    except (OSError, ValueError):
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.2)
    if _alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    shutil.rmtree(run_dir, ignore_errors=True)
    with contextlib.suppress(OSError):
        run_dir.parent.rmdir()  # /run/memops-lab, when no other engine is left
    return True


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (dockerd is not our child after a new invoke) counts as gone.
    with contextlib.suppress(OSError):
        state = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8").rsplit(")", 1)[1].split()[0]
        return state != "Z"
    return True
