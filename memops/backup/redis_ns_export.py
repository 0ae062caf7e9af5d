"""Per-namespace logical dump of Redis: SCAN + DUMP + PEXPIRETIME in a server-side script.

One EVALSHA call runs one SCAN step (``COUNT`` keys, MATCH on the escaped tenant
pattern), DUMPs the keys of exactly this namespace, reads their absolute expiry
and returns the cursor and the records already encoded in the file's record
format. Short steps keep the server responsive (other clients wait at most one
step); the next call is sent before the previous reply is processed, so Python
and the server work at the same time. Python re-checks every key with
``key_in_namespace`` and drops keys SCAN returned twice.

The content checksum of a namespace is order-independent: the sum, modulo
2**256, of sha256(u32 key length | key | DUMP payload without its 10-byte
version and CRC footer) over its keys. ``summarize`` computes it on a live
server the same way, so a restore can be compared with the set.
"""

from __future__ import annotations

import hashlib
import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from memops.backup.artifacts import BackupError, TenantSummary
from memops.backup.redis_nsfile import RECORD, NamespaceWriter
from memops.workload import key_in_namespace, tenant_pattern

if TYPE_CHECKING:
    import redis

SCAN_COUNT = 2000
FOOTER = 10  # DUMP payload: ... | u16 RDB version | u64 CRC64

_SCRIPT = """
local head = ARGV[3]
local hl = #head
local step = redis.call('SCAN', ARGV[1], 'MATCH', ARGV[2], 'COUNT', ARGV[4])
local out, n = {}, 0
for _, key in ipairs(step[2]) do
  if string.sub(key, 1, hl) == head then
    local c = string.find(key, ':', hl + 1, true)
    if c and c > hl + 1 and c < #key and not string.find(key, ':', c + 1, true) then
      local payload = redis.call('DUMP', key)
      if payload then
        n = n + 1
        out[n] = struct.pack('>I4i8I4', #key, redis.call('PEXPIRETIME', key), #payload)
          .. key .. payload
      end
    end
  end
end
return {step[1], table.concat(out)}
"""
# The whole keyspace (database 0), for a whole restore: every key, no namespace check.
_WHOLE_SCRIPT = """
local step = redis.call('SCAN', ARGV[1], 'COUNT', ARGV[2])
local out, n = {}, 0
for _, key in ipairs(step[2]) do
  local payload = redis.call('DUMP', key)
  if payload then
    n = n + 1
    local head = struct.pack('>I4i8I4', #key, redis.call('PEXPIRETIME', key), #payload)
    out[n] = head .. key .. payload
  end
end
return {step[1], table.concat(out)}
"""
_KEY_LEN = struct.Struct(">I")


@dataclass
class NamespaceDigest:
    """Count, checksum and dedup state of one namespace (``tenant`` None: every key) as read."""

    prefix: str
    tenant: str | None
    count: int = 0
    duplicates: int = 0
    foreign: int = 0
    rdb_format: str = ""
    _sum: int = 0

    def __post_init__(self) -> None:
        self._seen: set[bytes] = set()

    def absorb(self, blob: bytes) -> list[memoryview]:
        """The parts of ``blob`` to keep: every record of a new key of this namespace."""
        keep: list[memoryview] = []
        view = memoryview(blob)
        unpack, head, seen, sha = RECORD.unpack_from, RECORD.size, self._seen, hashlib.sha256
        offset = start = 0
        size = len(blob)
        while offset < size:
            key_len, _, payload_len = unpack(blob, offset)
            key_at = offset + head
            end = key_at + key_len + payload_len
            key = blob[key_at : key_at + key_len]
            fresh = key not in seen and (
                self.tenant is None
                or key_in_namespace(
                    key.decode("utf-8", "surrogateescape"), self.prefix, self.tenant
                )
            )
            if fresh:
                seen.add(key)
                digest = sha(_KEY_LEN.pack(key_len) + blob[key_at : end - FOOTER]).digest()
                self._sum += int.from_bytes(digest, "big")
                self.count += 1
            else:
                if key in seen:
                    self.duplicates += 1
                else:
                    self.foreign += 1
                if offset > start:
                    keep.append(view[start:offset])
                start = end
            offset = end
        if size > start:
            keep.append(view[start:size])
            if not self.rdb_format:
                self.rdb_format = str(int.from_bytes(blob[size - FOOTER : size - 8], "little"))
        return keep

    def _belongs(self, key: bytes) -> bool:
        if self.tenant is None:
            return True
        return key_in_namespace(key.decode("utf-8", "surrogateescape"), self.prefix, self.tenant)

    def add(self, key: bytes, payload: bytes) -> None:
        """Count one key known to be new and of this namespace (a record being restored)."""
        digest = hashlib.sha256(_KEY_LEN.pack(len(key)) + key + payload[:-FOOTER]).digest()
        self._sum += int.from_bytes(digest, "big")
        self.count += 1

    @property
    def checksum(self) -> str:
        return (self._sum % (1 << 256)).to_bytes(32, "big").hex()

    def summary(self, **details: object) -> TenantSummary:
        return TenantSummary(self.count, self.checksum, dict(details))


def scan_namespace(
    client: redis.Redis, prefix: str, tenant: str, *, count: int = SCAN_COUNT
) -> Iterator[bytes]:
    """Encoded records of the namespace, one blob per SCAN step (may repeat keys)."""
    args = (
        tenant_pattern(prefix, tenant).encode("utf-8"),
        f"{prefix}:memory:{tenant}:".encode(),
        str(count).encode(),
    )
    return _scan(client, _SCRIPT, args)


def scan_keyspace(client: redis.Redis, *, count: int = SCAN_COUNT) -> Iterator[bytes]:
    """Encoded records of every key of database 0, one blob per SCAN step (may repeat keys)."""
    return _scan(client, _WHOLE_SCRIPT, (str(count).encode(),))


def _scan(client: redis.Redis, script: str, args: tuple[bytes, ...]) -> Iterator[bytes]:
    """Run ``script`` once per SCAN step, the next call sent before this reply is read."""
    sha = client.script_load(script)
    conn = client.connection_pool.get_connection()
    try:
        conn.send_command("EVALSHA", sha, 0, b"0", *args)
        while True:
            cursor, blob = conn.read_response()
            if cursor != b"0":
                conn.send_command("EVALSHA", sha, 0, cursor, *args)
            if blob:
                yield blob
            if cursor == b"0":
                break
    except BaseException:
        conn.disconnect()
        raise
    finally:
        client.connection_pool.release(conn)


def summarize(client: redis.Redis, prefix: str, tenant: str) -> NamespaceDigest:
    """Count and content checksum of a namespace as a live server holds it."""
    digest = NamespaceDigest(prefix, tenant)
    for blob in scan_namespace(client, prefix, tenant):
        digest.absorb(blob)
    return digest


def export_namespace(
    client: redis.Redis,
    prefix: str,
    tenant: str,
    path: Path,
    *,
    meta: dict[str, object],
    count: int = SCAN_COUNT,
    progress: Callable[[int], None] | None = None,
) -> tuple[NamespaceDigest, int]:
    """Write one namespace to ``path`` (renamed into place when complete): digest, bytes."""
    return _export(
        scan_namespace(client, prefix, tenant, count=count),
        NamespaceDigest(prefix, tenant),
        path,
        {**meta, "prefix": prefix, "tenant": tenant},
        progress,
    )


def export_keyspace(
    client: redis.Redis, path: Path, *, meta: dict[str, object]
) -> tuple[NamespaceDigest, int]:
    """Write every key of database 0 to ``path`` (tenant None in its header): digest, bytes."""
    return _export(
        scan_keyspace(client), NamespaceDigest("", None), path, {**meta, "tenant": None}, None
    )


def _export(
    blobs: Iterator[bytes],
    digest: NamespaceDigest,
    path: Path,
    meta: dict[str, object],
    progress: Callable[[int], None] | None,
) -> tuple[NamespaceDigest, int]:
    import redis as redis_lib

    writer = NamespaceWriter(path, meta)
    try:
        for blob in blobs:
            for part in digest.absorb(blob):
                writer.write(part)
            if progress is not None:
                progress(digest.count)
        writer.close(digest.count)
    except redis_lib.RedisError as exc:
        writer.abort(exc)
        what = "of the keyspace" if digest.tenant is None else f"of {digest.tenant!r}"
        raise BackupError(f"redis namespace export {what} failed: {exc}") from None
    except BaseException as exc:
        writer.abort(exc)
        raise
    return digest, writer.size


def now_ms() -> int:
    return time.time_ns() // 1_000_000
