"""Restore one namespace from its logical dump: raw pipelined ``RESTORE … ABSTTL REPLACE``.

Before anything is touched: the target's Redis version must not be older than
the set's (``refuse_older_server``) and the file must verify (trailer sha256 and
count). Keys whose absolute expiry has passed are skipped and counted, never
resurrected. With ``replace_namespace`` the keys of the namespace that are not
in the set are UNLINKed first (SCAN in batches), so the namespace ends equal to
the set; without it, keys the set does not hold are left alone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from memops import faults
from memops.backup.artifacts import BackupError
from memops.backup.redis.ns_export import now_ms
from memops.backup.redis.nsfile import (
    END_OF_RECORDS,
    RECORD,
    read_batches,
    read_decoded,
    verify,
)
from memops.backup.redis.resp import RawPipe
from memops.backup.redis.server import refuse_older_server, server_version
from memops.model import key_in_namespace, namespace_pattern
from memops.progress import meter

if TYPE_CHECKING:
    import redis

_WITH_TTL = (
    b"*6\r\n$7\r\nRESTORE\r\n$%d\r\n%b\r\n$%d\r\n%b\r\n$%d\r\n%b\r\n"
    b"$6\r\nABSTTL\r\n$7\r\nREPLACE\r\n"
)
_NO_TTL = b"*5\r\n$7\r\nRESTORE\r\n$%d\r\n%b\r\n$1\r\n0\r\n$%d\r\n%b\r\n$7\r\nREPLACE\r\n"


@dataclass(frozen=True)
class NamespaceRestore:
    tenant: str
    restored: int
    expired_skipped: int
    deleted: int  # keys of the namespace not in the set, removed by replace_namespace


@dataclass(frozen=True)
class Commands:
    """The RESTORE commands of a run of records: RESP bytes, how many, how many expired."""

    data: bytes
    restored: int
    expired: int


@dataclass
class RecordsRestored:
    restored: int = 0
    expired_skipped: int = 0
    # With ``track``: the keys restored (a whole restore unlinks every other key).
    keys: set[bytes] = field(default_factory=set, repr=False)


def restore_namespace(
    client: redis.Redis,
    path: Path,
    versions: dict[str, str],
    *,
    prefix: str,
    tenant: str,
    replace_namespace: bool = False,
) -> NamespaceRestore:
    refuse_older_server(versions, server_version(client))
    meta, _ = verify(path)
    if meta.get("tenant") != tenant or meta.get("prefix") != prefix:
        raise BackupError(f"{path.name}: holds namespace {meta.get('tenant')!r}, not {tenant!r}")
    deleted = 0
    if replace_namespace:
        wanted = {key for batch in read_batches(path) for key, _, _ in batch}
        deleted = unlink_unwanted(
            client,
            wanted,
            match=namespace_pattern(prefix, tenant),
            belongs=lambda key: key_in_namespace(key, prefix, tenant),
        )
    done = restore_records(client, path, what=repr(tenant))
    return NamespaceRestore(tenant, done.restored, done.expired_skipped, deleted)


def restore_records(
    client: redis.Redis, path: Path, *, what: str, track: bool = False
) -> RecordsRestored:
    """RESTORE … ABSTTL REPLACE every record of a verified dump that has not expired.

    ``track`` also keeps the restored keys (a whole restore unlinks every other key);
    a namespace restore does without that cost per key.
    """
    pipe = RawPipe(client)
    done = RecordsRestored()
    kept: list[bytes] | None = [] if track else None
    decoded = read_decoded(path, lambda buffer: _commands(buffer, now_ms(), kept))
    try:
        with meter().count(f"redis restore {what}", "keys") as counter:
            for commands in decoded:
                pipe.send(commands.data, commands.restored)
                faults.point("redis.restore.batch")
                if kept:
                    done.keys.update(kept)
                    kept.clear()
                done.restored += commands.restored
                done.expired_skipped += commands.expired
                counter.update(done.restored)
            pipe.finish()
    except (OSError, ConnectionError) as exc:
        pipe.abandon()
        raise BackupError(
            f"redis restore of {what} broke off after {done.restored} keys: {exc}"
        ) from None
    except BaseException:
        pipe.abandon()
        raise
    if pipe.errors:
        raise BackupError(
            f"redis restore of {what}: {pipe.errors} of {done.restored} keys failed: "
            f"{pipe.first_error}"
        )
    return done


def _commands(buffer: bytes, now: int, kept: list[bytes] | None) -> tuple[Commands, int, int, bool]:
    """A file ``Decoder``: RESTORE commands of the whole records at the start of ``buffer``.

    Straight from the file's bytes to RESP, no tuple per record (the restore's Python
    cost is per record): the records not expired at ``now`` (ms), appended to ``kept``
    too when given. Walks the records as ``redis_nsfile._parse`` does.
    """
    parts: list[bytes] = []
    unpack, head = RECORD.unpack_from, RECORD.size
    offset, size, records, expired, ended = 0, len(buffer), 0, 0, False
    while offset + head <= size:
        key_len, expire_ms, payload_len = unpack(buffer, offset)
        if key_len == END_OF_RECORDS:
            ended = True
            break
        key_at = offset + head
        payload_at = key_at + key_len
        end = payload_at + payload_len
        if end > size:
            break
        offset = end
        records += 1
        key, payload = buffer[key_at:payload_at], buffer[payload_at:end]
        if expire_ms < 0:
            parts.append(_NO_TTL % (key_len, key, payload_len, payload))
        elif expire_ms > now:
            ttl = b"%d" % expire_ms
            parts.append(_WITH_TTL % (key_len, key, len(ttl), ttl, payload_len, payload))
        else:
            expired += 1
            continue
        if kept is not None:
            kept.append(key)
    return Commands(b"".join(parts), records - expired, expired), records, offset, ended


def unlink_unwanted(
    client: redis.Redis,
    wanted: set[bytes],
    *,
    match: str | None,
    belongs: Callable[[str], bool] | None,
) -> int:
    """UNLINK the live keys (matching ``match`` and ``belongs``) that are not ``wanted``."""
    stale: list[bytes] = []
    deleted = 0
    for key in client.scan_iter(match=match, count=1000):
        if key not in wanted and (
            belongs is None or belongs(key.decode("utf-8", "surrogateescape"))
        ):
            stale.append(key)
        if len(stale) >= 500:
            deleted += client.unlink(*stale)
            stale.clear()
            faults.point("redis.unlink")
    if stale:
        deleted += client.unlink(*stale)
    return deleted
