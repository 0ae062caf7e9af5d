"""Whole restore of the live Redis from a set's RDB, through the running server.

Replacing dump.rdb under a stopped server restores nothing when AOF is on (as the
role deploys Redis): at start-up Redis loads the AOF, not the RDB. So memops never
swaps the server's files. It loads the set's RDB into a private scratch server
(``memops.backup.scratch``), copies every key of database 0 into the live server
with ``RESTORE … ABSTTL REPLACE``, UNLINKs the live keys the set does not hold, and
checks that the live keyspace's content checksum equals that of the keys it
restored, less those whose absolute expiry passed before the check read them
(gone legitimately: counted as ``expired_during``, not taken for another
client's writes). The writes go through the server, so its AOF holds them; then it
rewrites the AOF (``BGREWRITEAOF``; ``BGSAVE`` when AOF is off) and waits, so the
files a restart loads are whole. Keys whose expiry passed are skipped and counted.

During the copy, clients see old and restored keys side by side: stop the
writers first (the runbook says so).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from memops.backup.artifacts import BackupError, RestoreRefused
from memops.backup.redis.full import bgsave
from memops.backup.redis.ns_export import (
    NamespaceDigest,
    export_keyspace,
    now_ms,
    scan_keyspace,
)
from memops.backup.redis.ns_restore import restore_records, unlink_unwanted
from memops.backup.redis.nsfile import read_batches
from memops.backup.redis.server import info, refuse_older_server, server_version, wait_for

if TYPE_CHECKING:
    import redis

KEYSPACE_FILE = "keyspace.keys"


@dataclass(frozen=True)
class WholeRestore:
    restored: int
    expired_skipped: int
    deleted: int
    checksum: str
    expired_during: int  # restored, then expired before the final check read them
    persisted: str  # what was done so a restart loads the restored data

    def to_dict(self) -> dict[str, Any]:
        return {
            "restored": self.restored,
            "expired_skipped": self.expired_skipped,
            "deleted": self.deleted,
            "expired_during": self.expired_during,
            "checksum": self.checksum,
        }


def restore_whole(
    live: redis.Redis,
    scratch: redis.Redis,
    workdir: Path,
    set_versions: dict[str, str],
    *,
    timeout_s: float = 600,
) -> WholeRestore:
    """Make the live server's database 0 equal to what ``scratch`` loaded from the set."""
    refuse_older_server(set_versions, server_version(live))
    other_dbs = [db for db in info(scratch, "keyspace") if db != "db0"]
    if other_dbs:
        raise RestoreRefused(
            f"redis: the set holds keys in {', '.join(sorted(other_dbs))}; a whole restore "
            "copies database 0 only (the one memops uses)"
        )
    path = workdir / KEYSPACE_FILE
    export_keyspace(scratch, path, meta=dict(set_versions))
    done = restore_records(live, path, what="the whole keyspace", track=True)
    deleted = unlink_unwanted(live, done.keys, match=None, belongs=None)
    after = NamespaceDigest("", None)
    for batch in scan_keyspace(live):
        after.absorb(batch)
    expected, expired = _expected_after(path, after, checked_at=now_ms())
    if (after.count, after.checksum) != (expected.count, expected.checksum):
        raise BackupError(
            f"redis: after the whole restore the live server holds {after.count} keys "
            f"(checksum {after.checksum[:12]}), the set's restored keys are "
            f"{expected.count} (checksum {expected.checksum[:12]}, less {expired} that "
            "expired since): another client wrote during the restore? Stop the writers "
            "and restore again"
        )
    return WholeRestore(
        restored=done.restored,
        expired_skipped=done.expired_skipped,
        deleted=deleted,
        checksum=after.checksum,
        expired_during=max(0, expired - done.expired_skipped),
        persisted=_persist(live, timeout_s),
    )


def _expected_after(
    path: Path, live: NamespaceDigest, *, checked_at: int
) -> tuple[NamespaceDigest, int]:
    """What the live keyspace should hold after the copy: count, checksum; how many expired.

    Every record of the restored keyspace file, less the keys the live server no longer
    holds because their absolute expiry (ms) had passed by ``checked_at`` (the end of
    the scan that read ``live``). A record missing without having expired stays
    expected, so the counts differ and the restore fails, as it should.
    """
    expected = NamespaceDigest("", None)
    expired = 0
    for batch in read_batches(path):
        kept = []
        for record in batch:
            key, expire_ms, _ = record
            if 0 <= expire_ms <= checked_at and not live.holds(key):
                expired += 1
            else:
                kept.append(record)
        expected.add(kept)
    return expected, expired


def _persist(client: redis.Redis, timeout_s: float) -> str:
    """Rewrite the AOF (or save the RDB) from the restored data and wait for it."""
    if info(client, "persistence").get("aof_enabled") == "1":
        client.execute_command("BGREWRITEAOF")
        wait_for("BGREWRITEAOF to finish", lambda: _rewritten(client), timeout_s=timeout_s)
        return "AOF on: restored through the server (the AOF logged every key), then rewritten"
    bgsave(client, timeout_s=timeout_s)
    return "AOF off: restored through the server, then saved to the RDB (BGSAVE)"


def _rewritten(client: redis.Redis) -> bool | None:
    fields = info(client, "persistence")
    if fields.get("aof_rewrite_in_progress") != "0" or fields.get("aof_rewrite_scheduled") != "0":
        return None
    if fields.get("aof_last_bgrewrite_status") != "ok":
        raise BackupError("redis: the AOF rewrite after the restore failed; see the Redis log")
    return True
