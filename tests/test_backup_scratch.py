"""Scratch Redis for drills: loads an RDB at start-up, goes away afterwards."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from memops.backup.artifacts import BackupError
from memops.backup.scratch import scratch_redis
from memops.backup.sets import work_dir
from memops.clients import redis_client
from memops.testing import workload as wl


def _make_rdb(directory: Path, load: wl.Workload) -> Path:
    """An RDB holding the workload's keys, saved by an empty scratch server."""
    with scratch_redis(None) as source, redis_client(source) as client:
        wl.write_redis(client, load)
        client.save()
        saved = Path(client.config_get("dir")["dir"]) / "dump.rdb"
        shutil.copyfile(saved, directory / "dump.rdb")
    return directory / "dump.rdb"


def test_scratch_redis_serves_the_rdb_and_is_removed(tmp_path: Path) -> None:
    load = wl.generate(seed=5, tenants=2)
    rdb = _make_rdb(tmp_path, load)
    with scratch_redis(rdb) as target, redis_client(target) as client:
        assert wl.verify_redis(client, load) == []
        port = target.port
    with pytest.raises(Exception), redis_client(target, timeout_s=1) as client:  # noqa: B017
        client.ping()
    assert port > 0


def test_a_corrupt_rdb_is_a_clear_error(tmp_path: Path) -> None:
    rdb = tmp_path / "dump.rdb"
    rdb.write_bytes(b"REDIS0010" + b"\x00garbage" * 10)
    with pytest.raises(BackupError, match="scratch redis-server exited"), scratch_redis(rdb):
        pass


def test_a_scratch_server_dies_with_the_process_that_started_it(tmp_path: Path) -> None:
    """SIGKILL runs no cleanup: the kernel ends the scratch server (it may hold a set's data)."""
    script = (
        "import sys, time\n"
        "from memops.backup.scratch import scratch_redis\n"
        "with scratch_redis(None) as target:\n"
        "    print(target.port, flush=True)\n"
        "    time.sleep(300)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    port = int(child.stdout.readline())  # type: ignore[union-attr]
    assert port_open("127.0.0.1", port)
    os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=30)
    deadline = time.monotonic() + 10
    while port_open("127.0.0.1", port) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not port_open("127.0.0.1", port)


def port_open(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def test_a_killed_runs_work_directory_goes_with_the_next_one(tmp_path: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    orphan = tmp_path / f"memops-restore-{dead.pid}-x1y2"
    (orphan / "set" / "redis").mkdir(parents=True)
    (orphan / "set" / "redis" / "decrypted.rdb").write_bytes(b"secret")
    alive = tmp_path / f"memops-backup-{os.getpid()}-a1b2"  # a run still going: kept
    alive.mkdir()
    unrelated = tmp_path / "notes"
    unrelated.mkdir()
    with work_dir(tmp_path, "drill") as work:
        assert work.name.startswith(f"memops-drill-{os.getpid()}-")
        assert not orphan.exists()
        assert alive.exists() and unrelated.exists()
    assert not work.exists()
