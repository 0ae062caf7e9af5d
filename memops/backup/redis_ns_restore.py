"""Restore one namespace from its logical dump: raw pipelined ``RESTORE … ABSTTL REPLACE``.

Before anything is touched: the target's Redis version must not be older than
the set's (``refuse_older_server``) and the file must verify (trailer sha256 and
count). Keys whose absolute expiry has passed are skipped and counted, never
resurrected. With ``replace_namespace`` the keys of the namespace that are not
in the set are UNLINKed first (SCAN in batches), so the namespace ends equal to
the set; without it, keys the set does not hold are left alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from memops.backup.artifacts import BackupError
from memops.backup.redis_ns_export import now_ms
from memops.backup.redis_nsfile import Record, read_batches, verify
from memops.backup.redis_server import refuse_older_server, server_version
from memops.backup.resp import RawPipe
from memops.workload import key_in_namespace, tenant_pattern

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
    deleted = _delete_others(client, path, prefix, tenant) if replace_namespace else 0
    pipe = RawPipe(client)
    restored = skipped = 0
    try:
        for batch in read_batches(path):
            data, sent, dropped = _commands(batch, now_ms())
            pipe.send(data, sent)
            restored += sent
            skipped += dropped
        pipe.finish()
    except (OSError, ConnectionError) as exc:
        pipe.abandon()
        raise BackupError(
            f"redis restore of {tenant!r} broke off after {restored} keys: {exc}"
        ) from None
    except BaseException:
        pipe.abandon()
        raise
    if pipe.errors:
        raise BackupError(
            f"redis restore of {tenant!r}: {pipe.errors} of {restored} keys failed: "
            f"{pipe.first_error}"
        )
    return NamespaceRestore(tenant, restored, skipped, deleted)


def _commands(batch: list[Record], now: int) -> tuple[bytes, int, int]:
    parts = []
    skipped = 0
    for key, expire_ms, payload in batch:
        if expire_ms < 0:
            parts.append(_NO_TTL % (len(key), key, len(payload), payload))
        elif expire_ms > now:
            ttl = b"%d" % expire_ms
            parts.append(_WITH_TTL % (len(key), key, len(ttl), ttl, len(payload), payload))
        else:
            skipped += 1
    return b"".join(parts), len(parts), skipped


def _delete_others(client: redis.Redis, path: Path, prefix: str, tenant: str) -> int:
    """UNLINK the namespace's live keys that the set does not hold."""
    wanted = {key for batch in read_batches(path) for key, _, _ in batch}
    stale: list[bytes] = []
    deleted = 0
    for key in client.scan_iter(match=tenant_pattern(prefix, tenant), count=1000):
        if key not in wanted and key_in_namespace(
            key.decode("utf-8", "surrogateescape"), prefix, tenant
        ):
            stale.append(key)
        if len(stale) >= 500:
            deleted += client.unlink(*stale)
            stale.clear()
    if stale:
        deleted += client.unlink(*stale)
    return deleted
