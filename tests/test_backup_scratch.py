"""Scratch Redis for drills: loads an RDB at start-up, goes away afterwards."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from memops import workload as wl
from memops.backup.artifacts import BackupError
from memops.backup.scratch import scratch_redis
from memops.clients import redis_client


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
