"""Scratch instances for restore drills: never the live ones, always cleaned up.

A drill restores the latest set into a temporary Redis on its own port, a
scratch database next to the live one and scratch collections, compares them
with the manifest and removes them, also when the drill fails.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from memops.backup.artifacts import BackupError
from memops.clients import redis_client
from memops.deploy.targets import RedisTarget

REDIS_START_TIMEOUT_S = 120.0


def die_with_parent() -> None:
    """In a child before exec: the kernel kills it when memops dies, even by SIGKILL
    (PR_SET_PDEATHSIG), so no scratch server holding a set's data outlives its run."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    if os.getppid() == 1:  # the parent died before prctl took effect
        os._exit(1)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def scratch_redis(
    rdb_file: Path | None, *, redis_server: str = "redis-server"
) -> Iterator[RedisTarget]:
    """A private redis-server loading ``rdb_file`` at start-up (AOF off), on a free port.

    Without ``rdb_file`` it starts empty (namespace dumps are restored into it).

    Loading the RDB at start-up is exactly what a whole restore relies on, so the
    time until the scratch server has loaded is the Redis part of the drill's RTO.
    """
    if shutil.which(redis_server) is None:
        raise BackupError(f"drill: {redis_server} is not installed on this host")
    # Beside the set's RDB: inside the caller's private work directory, gone with it.
    workdir = Path(
        tempfile.mkdtemp(
            prefix="memops-scratch-redis-", dir=rdb_file.parent if rdb_file is not None else None
        )
    )
    password = secrets.token_urlsafe(24)
    if rdb_file is not None:
        try:  # the server only reads it (no saves): a link spares copying gigabytes
            os.link(rdb_file, workdir / "dump.rdb")
        except OSError:
            shutil.copyfile(rdb_file, workdir / "dump.rdb")
    port = free_port()
    config = workdir / "redis.conf"
    config.write_text(
        "\n".join(
            [
                "bind 127.0.0.1",
                f"port {port}",
                f"dir {workdir}",
                "dbfilename dump.rdb",
                "appendonly no",
                'save ""',
                f"requirepass {password}",
                "daemonize no",
                f"logfile {workdir / 'redis.log'}",
            ]
        )
        + "\n"
    )
    config.chmod(0o600)  # it holds the scratch password
    process = subprocess.Popen(
        [redis_server, str(config)], stdout=subprocess.DEVNULL, preexec_fn=die_with_parent
    )
    target = RedisTarget(name="drill-redis", host="127.0.0.1", port=port, password=password)
    try:
        _wait_loaded(target, process, workdir)
        yield target
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)


def _wait_loaded(target: RedisTarget, process: subprocess.Popen[bytes], workdir: Path) -> None:
    deadline = time.monotonic() + REDIS_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log = (workdir / "redis.log").read_text(errors="replace")[-300:]
            raise BackupError(f"drill: scratch redis-server exited: {' '.join(log.split())}")
        with contextlib.suppress(Exception), redis_client(target, timeout_s=1) as client:
            if int(client.info("persistence").get("loading", 1)) == 0:
                return
        time.sleep(0.05)
    raise BackupError("drill: scratch redis-server did not finish loading in time")
