"""The file format of one namespace's logical Redis dump (streaming, length-prefixed).

    header   MAGIC (16 bytes) | u16 version | u32 n | n bytes of JSON metadata
    record   u32 key length | i64 absolute expiry in ms (-1: none) | u32 payload length
             | key | DUMP payload                                  (all big-endian)
    trailer  u32 0xFFFFFFFF | u64 record count | sha256 of everything before the trailer

Records are written as the export produces them (no index, no seeking), so a
file is written once front to back under a temporary name and renamed when the
trailer is on. ``verify`` checks the trailer's sha256 without touching a
server; ``read_batches`` yields the records and checks sha256 and count;
``read_decoded`` does the same for a caller that decodes the records itself
(a restore turns them into RESP without making a tuple per record).
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, TypeVar

from memops.backup.artifacts import BackupError
from memops.files import open_atomic

MAGIC = b"MEMOPS-REDIS-NS\x00"
VERSION = 1
RECORD = struct.Struct(">IqI")
_HEAD = struct.Struct(">HI")
_TRAILER = struct.Struct(">IQ32s")
END_OF_RECORDS = 0xFFFFFFFF  # where a record's key length would be: the trailer starts
_CHUNK = 4 * 1024 * 1024
_READ_CHUNK = 1024 * 1024  # a restore sends a batch per chunk read: the server starts early

Record = tuple[bytes, int, bytes]  # key, absolute expiry in ms (-1: none), DUMP payload
T = TypeVar("T")
# decode(buffer) -> (what it made of the whole records at the start of ``buffer``,
#                    how many records, bytes they take, whether the trailer follows them)
Decoder = Callable[[bytes], tuple[T, int, int, bool]]


class NamespaceWriter:
    """Write one dump: ``write(blob)`` takes already-encoded records, ``close(count)`` seals."""

    def __init__(self, path: Path, meta: dict[str, Any]) -> None:
        self.path = path
        self._context: AbstractContextManager[Any] = open_atomic(path)
        self._handle = self._context.__enter__()
        self._digest = hashlib.sha256()
        self.size = 0
        body = json.dumps(meta, sort_keys=True, ensure_ascii=False).encode("utf-8")
        self.write(MAGIC + _HEAD.pack(VERSION, len(body)) + body)

    def write(self, blob: bytes | memoryview) -> None:
        self._digest.update(blob)
        self._handle.write(blob)
        self.size += len(blob)

    def close(self, count: int) -> None:
        trailer = _TRAILER.pack(END_OF_RECORDS, count, self._digest.digest())
        self._handle.write(trailer)
        self.size += len(trailer)
        self._context.__exit__(None, None, None)

    def abort(self, exc: BaseException) -> None:
        """Drop the temporary file; the final name is never created."""
        self._context.__exit__(type(exc), exc, exc.__traceback__)


def encode_record(key: bytes, expire_ms: int, payload: bytes) -> bytes:
    return RECORD.pack(len(key), expire_ms, len(payload)) + key + payload


def verify(path: Path) -> tuple[dict[str, Any], int]:
    """The metadata and record count of a complete, intact file; BackupError otherwise."""
    size = path.stat().st_size
    with path.open("rb") as handle:
        meta, _ = _read_header(handle, path)
        if size < handle.tell() + _TRAILER.size:
            raise BackupError(f"{path.name}: truncated (no trailer)")
        handle.seek(0)
        digest = hashlib.sha256()
        remaining = size - _TRAILER.size
        while remaining > 0:
            chunk = handle.read(min(_CHUNK, remaining))
            if not chunk:
                raise BackupError(f"{path.name}: truncated")
            digest.update(chunk)
            remaining -= len(chunk)
        marker, count, recorded = _TRAILER.unpack(handle.read(_TRAILER.size))
    if marker != END_OF_RECORDS or recorded != digest.digest():
        raise BackupError(f"{path.name}: checksum mismatch (corrupt or truncated)")
    return meta, count


def read_meta(path: Path) -> dict[str, Any]:
    with path.open("rb") as handle:
        return _read_header(handle, path)[0]


def read_batches(path: Path) -> Iterator[list[Record]]:
    """The records in file order, a batch per read chunk; checks count and sha256 at the end."""
    return read_decoded(path, _parse)


def read_decoded(path: Path, decode: Decoder[T]) -> Iterator[T]:
    """``decode`` of the records in file order, per read chunk; checks count and sha256 at the end.

    The last item comes before the check: a caller that acts on items learns of a file
    damaged since ``verify`` only then (the error names it).
    """
    with path.open("rb") as handle:
        _, header = _read_header(handle, path)
        digest = hashlib.sha256(header)
        buffer = b""
        count = 0
        while True:
            chunk = handle.read(_READ_CHUNK)
            if not chunk and len(buffer) < RECORD.size:
                raise BackupError(f"{path.name}: truncated (no trailer)")
            buffer = buffer + chunk if buffer else chunk
            decoded, records, used, ended = decode(buffer)
            digest.update(memoryview(buffer)[:used])
            count += records
            if records:
                yield decoded
            buffer = buffer[used:]
            if ended:
                break
            if not chunk:
                raise BackupError(f"{path.name}: truncated in a record")
        while len(buffer) < _TRAILER.size and (more := handle.read(_CHUNK)):
            buffer += more
    if len(buffer) != _TRAILER.size:
        raise BackupError(f"{path.name}: bad trailer (truncated or trailing data)")
    _, recorded_count, recorded = _TRAILER.unpack(buffer)
    if recorded != digest.digest() or recorded_count != count:
        raise BackupError(f"{path.name}: checksum mismatch (corrupt or truncated)")


def _parse(buffer: bytes) -> tuple[list[Record], int, int, bool]:
    """A ``Decoder``: the whole records at the start of ``buffer`` as tuples.

    The trailer (44 bytes) is longer than a record head, so a head-sized read at the
    trailer's start always fits and shows END_OF_RECORDS as the key length.
    """
    records: list[Record] = []
    unpack = RECORD.unpack_from
    offset, size, head = 0, len(buffer), RECORD.size
    while offset + head <= size:
        key_len, expire_ms, payload_len = unpack(buffer, offset)
        if key_len == END_OF_RECORDS:
            return records, len(records), offset, True
        start = offset + head
        end = start + key_len + payload_len
        if end > size:
            break
        records.append((buffer[start : start + key_len], expire_ms, buffer[start + key_len : end]))
        offset = end
    return records, len(records), offset, False


def _read_header(handle: Any, path: Path) -> tuple[dict[str, Any], bytes]:
    fixed = handle.read(len(MAGIC) + _HEAD.size)
    if len(fixed) < len(MAGIC) + _HEAD.size or not fixed.startswith(MAGIC):
        raise BackupError(f"{path.name}: not a memops Redis namespace dump")
    version, length = _HEAD.unpack_from(fixed, len(MAGIC))
    if version != VERSION:
        raise BackupError(f"{path.name}: format version {version}, this memops reads {VERSION}")
    body = handle.read(length)
    try:
        meta = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise BackupError(f"{path.name}: corrupt header") from None
    return meta, fixed + body
