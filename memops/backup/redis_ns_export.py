"""Per-namespace logical dump of Redis: SCAN + DUMP + PEXPIRETIME in a server-side script.

One EVALSHA call runs one SCAN step (``COUNT`` keys, MATCH on the escaped tenant
pattern), keeps the keys of exactly this namespace (the same test as
``key_in_namespace``: MATCH alone also takes ``acme:eu``'s keys for ``acme``),
DUMPs them, reads their absolute expiry and returns the cursor and the records
already encoded in the file's record format. Short steps keep the server
responsive (other clients wait at most one step); the next call is sent before
the previous reply is processed, so Python and the server work at the same time.

Python drops keys SCAN returned twice. It does so per batch, not per key: a
batch whose keys are all new (nearly always) is kept whole, and only a batch
with a repeat is cut record by record; per key, Python slices the key and
hashes it, nothing more.

The content checksum of a namespace is order-independent: the sum, modulo
2**256, of sha256(u32 key length | key | DUMP payload without its 10-byte
version and CRC footer) over its keys. ``summarize`` computes it on a live
server the same way, so a restore can be compared with the set.
"""

from __future__ import annotations

import hashlib
import struct
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from memops.backup.artifacts import BackupError, TenantSummary
from memops.backup.redis_nsfile import RECORD, NamespaceWriter, Record
from memops.workload import tenant_pattern

if TYPE_CHECKING:
    import redis

SCAN_COUNT = 2000
FOOTER = 10  # DUMP payload: ... | u16 RDB version | u64 CRC64


def _script(*, namespace: bool) -> str:
    """The SCAN step: with ``namespace``, MATCH ARGV[2] and only keys ``ARGV[3]{type}:{id}``."""
    scan = "'MATCH', ARGV[2], 'COUNT', ARGV[4]" if namespace else "'COUNT', ARGV[2]"
    # key_in_namespace: the head, then a non-empty type, ':', a non-empty id without ':'.
    belongs = "find(key, head, 1, true) == 1 and find(key, '^[^:]+:[^:]+$', #head + 1)"
    return f"""
local find, pack, call = string.find, struct.pack, redis.call
local head = ARGV[3]
local step = call('SCAN', ARGV[1], {scan})
local out, n = {{}}, 0
for _, key in ipairs(step[2]) do
  if {belongs if namespace else "true"} then
    local payload = call('DUMP', key)
    if payload then
      out[n + 1] = pack('>I4i8I4', #key, call('PEXPIRETIME', key), #payload)
      out[n + 2] = key
      out[n + 3] = payload
      n = n + 3
    end
  end
end
return {{step[1], table.concat(out)}}
"""


_SCRIPT = _script(namespace=True)
_WHOLE_SCRIPT = _script(namespace=False)  # every key of database 0, for a whole restore
_KEY_LEN = struct.Struct(">I")


def content_sum(keys: Iterable[bytes], contents: Iterable[bytes]) -> int:
    """The checksum's sum: sha256(u32 key length | content), content = key | payload less footer."""
    sha, pack = hashlib.sha256, _KEY_LEN.pack
    return sum(
        int.from_bytes(sha(pack(len(key)) + content).digest(), "big")
        for key, content in zip(keys, contents, strict=True)
    )


def _split(blob: bytes) -> tuple[list[bytes], list[bytes], list[int]]:
    """Per record of an export blob: its key, its content (``content_sum``), where it ends."""
    keys: list[bytes] = []
    contents: list[bytes] = []
    ends: list[int] = []
    unpack, head = RECORD.unpack_from, RECORD.size
    offset, size = 0, len(blob)
    while offset < size:
        key_len, _, payload_len = unpack(blob, offset)
        key_at = offset + head
        offset = key_at + key_len + payload_len
        keys.append(blob[key_at : key_at + key_len])
        contents.append(blob[key_at : offset - FOOTER])
        ends.append(offset)
    return keys, contents, ends


@dataclass
class NamespaceDigest:
    """Count, checksum and dedup state of one namespace (``tenant`` None: every key) as read."""

    prefix: str
    tenant: str | None
    count: int = 0
    duplicates: int = 0
    rdb_format: str = ""
    _sum: int = 0

    def __post_init__(self) -> None:
        self._seen: set[bytes] = set()

    def absorb(self, blob: bytes) -> list[bytes | memoryview]:
        """The parts of ``blob`` to keep: its records less those of keys already seen."""
        keys, contents, ends = _split(blob)
        batch = set(keys)
        if len(batch) == len(keys) and self._seen.isdisjoint(batch):
            self._seen |= batch
            parts: list[bytes | memoryview] = [blob] if blob else []
        else:
            parts, keys, contents = self._drop_repeats(blob, keys, contents, ends)
        self._sum += content_sum(keys, contents)
        self.count += len(keys)
        if blob and not self.rdb_format:
            self.rdb_format = str(int.from_bytes(blob[-FOOTER:-8], "little"))
        return parts

    def _drop_repeats(
        self, blob: bytes, keys: list[bytes], contents: list[bytes], ends: list[int]
    ) -> tuple[list[bytes | memoryview], list[bytes], list[bytes]]:
        """The parts, keys and contents of the records whose key was not seen before."""
        view = memoryview(blob)
        parts: list[bytes | memoryview] = []
        fresh_keys: list[bytes] = []
        fresh_contents: list[bytes] = []
        start = 0
        for key, content, end in zip(keys, contents, ends, strict=True):
            if key in self._seen:
                self.duplicates += 1
            else:
                self._seen.add(key)
                fresh_keys.append(key)
                fresh_contents.append(content)
                parts.append(view[start:end])
            start = end
        return parts, fresh_keys, fresh_contents

    def add(self, records: list[Record]) -> None:
        """Count records known to be new and of this namespace (records being restored)."""
        contents = [key + payload[:-FOOTER] for key, _, payload in records]
        self._sum += content_sum((key for key, _, _ in records), contents)
        self.count += len(records)

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
