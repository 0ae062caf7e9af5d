"""Per-namespace logical dump of Redis: SCAN, then PEXPIRETIME + DUMP of its keys in MULTI/EXEC.

Each SCAN step (``COUNT`` keys, MATCH on the escaped tenant pattern) is followed
by one MULTI/EXEC that reads the absolute expiry and the DUMP payload of the
step's keys of exactly this namespace (``namespace_key_regex``, the test of
``key_in_namespace``: MATCH alone also takes ``acme:eu``'s keys for ``acme``).
MULTI/EXEC makes a key's expiry and payload one state; it runs about a
millisecond, so other clients wait at most that. Plain commands, not a Lua
script: a ``redis.call`` costs the server more than the command itself, and
the server is what an export waits for.

Pipelined on a raw socket: the next SCAN and this step's MULTI/EXEC are sent
before the previous step's replies are read and filed, so Python and the
server work at the same time. Python drops keys SCAN returned twice, per
batch: a batch of new keys (nearly always) is kept whole.

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
from typing import TYPE_CHECKING, cast

from memops.backup.artifacts import BackupError, TenantSummary
from memops.backup.redis.nsfile import NamespaceWriter, Record, encode_record
from memops.backup.redis.payload import KeyIdTally
from memops.backup.redis.resp import RawReplies, command, connected_socket
from memops.model import namespace_key_regex, namespace_pattern
from memops.progress import meter

if TYPE_CHECKING:
    import redis

SCAN_COUNT = 2000
FOOTER = 10  # DUMP payload: ... | u16 RDB version | u64 CRC64
_KEY_LEN = struct.Struct(">I")
_MULTI, _EXEC = command(b"MULTI"), command(b"EXEC")
_EXPIRY_AND_DUMP = b"*2\r\n$11\r\nPEXPIRETIME\r\n$%d\r\n%b\r\n*2\r\n$4\r\nDUMP\r\n$%d\r\n%b\r\n"
_QUEUED = b"+QUEUED\r\n"


def content_sum(keys: Iterable[bytes], contents: Iterable[bytes]) -> int:
    """The checksum's sum: sha256(u32 key length | content), content = key | payload less footer."""
    sha, pack = hashlib.sha256, _KEY_LEN.pack
    return sum(
        int.from_bytes(sha(pack(len(key)) + content).digest(), "big")
        for key, content in zip(keys, contents, strict=True)
    )


@dataclass
class Batch:
    """The records of one SCAN step: encoded for the file, and each key and its content."""

    records: list[bytes]
    keys: list[bytes]
    contents: list[bytes]  # key | payload less footer (``content_sum``)
    vanished: int = 0  # keys SCAN listed that were gone (expired, deleted) when read

    @classmethod
    def of(cls, rows: Iterable[Record], *, vanished: int = 0) -> Batch:
        batch = cls([], [], [], vanished)
        for key, expire_ms, payload in rows:
            batch.records.append(encode_record(key, expire_ms, payload))
            batch.keys.append(key)
            batch.contents.append(key + payload[:-FOOTER])
        return batch


@dataclass
class NamespaceDigest:
    """Count, checksum and dedup state of one namespace (``tenant`` None: every key) as read."""

    prefix: str
    tenant: str | None
    count: int = 0
    duplicates: int = 0
    vanished: int = 0  # listed by SCAN, gone before their DUMP: not in the count
    rdb_format: str = ""
    _sum: int = 0
    key_ids: KeyIdTally | None = None  # given: count the key ids of the sealed values absorbed

    def __post_init__(self) -> None:
        self._seen: set[bytes] = set()

    def absorb(self, batch: Batch) -> list[bytes]:
        """The encoded records of ``batch`` to keep: less those of keys already seen."""
        keys, contents, records = batch.keys, batch.contents, batch.records
        fresh = set(keys)
        if len(fresh) == len(keys) and self._seen.isdisjoint(fresh):
            self._seen |= fresh
        else:
            keys, contents, records = self._drop_repeats(batch)
        self._sum += content_sum(keys, contents)
        self.count += len(keys)
        self.vanished += batch.vanished
        if self.key_ids is not None:
            self.key_ids.add(keys, contents)
        if records and not self.rdb_format:
            self.rdb_format = str(int.from_bytes(records[-1][-FOOTER:-8], "little"))
        return records

    def _drop_repeats(self, batch: Batch) -> tuple[list[bytes], list[bytes], list[bytes]]:
        """The keys, contents and records of ``batch`` whose key was not seen before."""
        kept: tuple[list[bytes], list[bytes], list[bytes]] = ([], [], [])
        for row in zip(batch.keys, batch.contents, batch.records, strict=True):
            if row[0] in self._seen:
                self.duplicates += 1
                continue
            self._seen.add(row[0])
            for column, value in zip(kept, row, strict=True):
                column.append(value)
        return kept

    def holds(self, key: bytes) -> bool:
        """Whether ``absorb`` took ``key``."""
        return key in self._seen

    def add(self, records: list[Record]) -> None:
        """Count records known to be new and of this namespace (records being restored)."""
        contents = [key + payload[:-FOOTER] for key, _, payload in records]
        self._sum += content_sum((key for key, _, _ in records), contents)
        self.count += len(records)

    @property
    def checksum(self) -> str:
        return (self._sum % (1 << 256)).to_bytes(32, "big").hex()

    def summary(self, **details: object) -> TenantSummary:
        if self.vanished:
            details = {"vanished": self.vanished, **details}
        return TenantSummary(self.count, self.checksum, dict(details))


def scan_namespace(
    client: redis.Redis, prefix: str, tenant: str, *, count: int = SCAN_COUNT
) -> Iterator[Batch]:
    """The records of the namespace, a batch per SCAN step (may repeat keys)."""
    pattern = namespace_pattern(prefix, tenant).encode("utf-8")
    args = (b"MATCH", pattern, b"COUNT", str(count).encode())
    return _scan(client, args, namespace_key_regex(prefix, tenant).fullmatch)


def scan_keyspace(client: redis.Redis, *, count: int = SCAN_COUNT) -> Iterator[Batch]:
    """The records of every key of database 0, a batch per SCAN step (may repeat keys)."""
    return _scan(client, (b"COUNT", str(count).encode()), None)


def _scan(
    client: redis.Redis, args: tuple[bytes, ...], belongs: Callable[[bytes], object] | None
) -> Iterator[Batch]:
    """SCAN with ``args``; per step, the keys ``belongs`` takes read in one MULTI/EXEC.

    Replies come in the order sent: the next SCAN and this step's MULTI/EXEC go out
    together, then the previous step's EXEC reply is read (the server meanwhile runs
    what was just sent), then the next SCAN's.
    """
    conn = client.connection_pool.get_connection()
    sock = connected_socket(conn)
    replies = RawReplies(sock)
    try:
        sock.sendall(command(b"SCAN", b"0", *args))
        cursor, keys = _scan_reply(replies, belongs)
        sent: list[bytes] = []  # keys of the MULTI/EXEC whose reply is still to read
        while True:
            out = [command(b"SCAN", cursor, *args)] if cursor != b"0" else []
            if keys:
                out.append(_read_keys(keys))
            sock.sendall(b"".join(out))
            if sent:
                yield _exec_reply(replies, sent)
            sent = keys
            if cursor == b"0":
                break
            cursor, keys = _scan_reply(replies, belongs)
        if sent:
            yield _exec_reply(replies, sent)
    except BaseException:
        conn.disconnect()  # replies may be left unread: the connection is not reusable
        raise
    finally:
        client.connection_pool.release(conn)


def _read_keys(keys: list[bytes]) -> bytes:
    """MULTI, PEXPIRETIME and DUMP of each key, EXEC: expiry and payload of one state."""
    parts = [_MULTI]
    parts.extend(_EXPIRY_AND_DUMP % (len(key), key, len(key), key) for key in keys)
    parts.append(_EXEC)
    return b"".join(parts)


def _scan_reply(
    replies: RawReplies, belongs: Callable[[bytes], object] | None
) -> tuple[bytes, list[bytes]]:
    """The next cursor and the step's keys that ``belongs`` takes."""
    replies.number()  # *2
    cursor = replies.bulk() or b"0"
    keys = cast(list[bytes], replies.values(replies.number()))
    return cursor, keys if belongs is None else list(filter(belongs, keys))


def _exec_reply(replies: RawReplies, keys: list[bytes]) -> Batch:
    """The records of ``keys`` from their MULTI/EXEC replies (keys gone meanwhile left out)."""
    replies.expect(b"+OK\r\n" + _QUEUED * (2 * len(keys)))
    if replies.number() != 2 * len(keys):
        raise BackupError("redis: EXEC answered a different number of commands than were sent")
    values = replies.values(2 * len(keys))
    expiries = cast(list[int], values[0::2])
    payloads = cast(list[bytes | None], values[1::2])
    return Batch.of(
        (
            (key, expire_ms, payload)
            for key, expire_ms, payload in zip(keys, expiries, payloads, strict=True)
            if payload is not None
        ),
        vanished=payloads.count(None),
    )


def summarize(client: redis.Redis, prefix: str, tenant: str) -> NamespaceDigest:
    """Count and content checksum of a namespace as a live server holds it."""
    digest = NamespaceDigest(prefix, tenant)
    for batch in scan_namespace(client, prefix, tenant):
        digest.absorb(batch)
    return digest


def export_namespace(
    client: redis.Redis,
    prefix: str,
    tenant: str,
    path: Path,
    *,
    meta: dict[str, object],
    count: int = SCAN_COUNT,
) -> tuple[NamespaceDigest, int]:
    """Write one namespace to ``path`` (renamed into place when complete): digest, bytes.

    The digest also counts the key ids its sealed values name (``digest.key_ids``).
    """
    return _export(
        scan_namespace(client, prefix, tenant, count=count),
        NamespaceDigest(prefix, tenant, key_ids=KeyIdTally()),
        path,
        {**meta, "prefix": prefix, "tenant": tenant},
    )


def export_keyspace(
    client: redis.Redis, path: Path, *, meta: dict[str, object]
) -> tuple[NamespaceDigest, int]:
    """Write every key of database 0 to ``path`` (tenant None in its header): digest, bytes."""
    return _export(scan_keyspace(client), NamespaceDigest("", None), path, {**meta, "tenant": None})


def _export(
    batches: Iterator[Batch],
    digest: NamespaceDigest,
    path: Path,
    meta: dict[str, object],
) -> tuple[NamespaceDigest, int]:
    import redis as redis_lib

    writer = NamespaceWriter(path, meta)
    what = "keyspace" if digest.tenant is None else repr(digest.tenant)
    try:
        with meter().count(f"redis {what}", "keys") as counter:
            for batch in batches:
                writer.write(b"".join(digest.absorb(batch)))
                counter.update(digest.count)
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
