"""The namespace file without a server: records across read chunks, damage, RESTORE commands."""

from __future__ import annotations

from pathlib import Path

import pytest

from memops.backup.artifacts import BackupError
from memops.backup.redis import nsfile as redis_nsfile
from memops.backup.redis.ns_restore import _commands
from memops.backup.redis.nsfile import NamespaceWriter, encode_record, read_batches, read_decoded

NOW = 1_700_000_000_000
RECORDS = [
    (b"p:memory:a:fact:%d" % i, (-1, NOW + 60_000, NOW - 1)[i % 3], b"\x00payload-%d" % i * (i % 7))
    for i in range(300)
]


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Reads of 100 bytes: records and the trailer fall across chunk borders."""
    monkeypatch.setattr(redis_nsfile, "_READ_CHUNK", 100)


def write(path: Path, records: list[tuple[bytes, int, bytes]]) -> Path:
    writer = NamespaceWriter(path, {"tenant": "a"})
    for record in records:
        writer.write(encode_record(*record))
    writer.close(len(records))
    return path


def test_records_come_back_in_order_across_chunks(tmp_path: Path) -> None:
    path = write(tmp_path / "a.ns", RECORDS)
    assert [r for batch in read_batches(path) for r in batch] == RECORDS
    assert list(read_batches(write(tmp_path / "empty.ns", []))) == []


@pytest.mark.parametrize("cut", [1, 10, 44, 45, 60, 500])
def test_a_truncated_file_is_refused(tmp_path: Path, cut: int) -> None:
    path = write(tmp_path / "a.ns", RECORDS)
    path.write_bytes(path.read_bytes()[:-cut])
    with pytest.raises(BackupError, match=r"truncated|trailer|mismatch"):
        list(read_batches(path))


def test_a_changed_byte_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path / "a.ns", RECORDS)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(BackupError, match="mismatch"):
        list(read_batches(path))


def test_restore_commands_skip_expired_records_and_keep_absolute_expiry(tmp_path: Path) -> None:
    path = write(tmp_path / "a.ns", RECORDS)
    kept: list[bytes] = []
    runs = list(read_decoded(path, lambda buffer: _commands(buffer, NOW, kept)))
    live = [r for r in RECORDS if r[1] < 0 or r[1] > NOW]
    assert kept == [key for key, _, _ in live]
    assert sum(run.restored for run in runs) == len(live) == 200
    assert sum(run.expired for run in runs) == 100
    assert b"".join(run.data for run in runs) == b"".join(resp(record) for record in live)


def resp(record: tuple[bytes, int, bytes]) -> bytes:
    key, expire_ms, payload = record
    args = [b"RESTORE", key, b"%d" % max(expire_ms, 0), payload]
    args += [b"ABSTTL", b"REPLACE"] if expire_ms > 0 else [b"REPLACE"]
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%b\r\n" % (len(a), a) for a in args)
