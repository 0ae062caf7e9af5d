"""Full Redis backup: BGSAVE, wait for it, copy the RDB, check it with ``redis-check-rdb``.

1. Wait for any BGSAVE already running, note LASTSAVE (waiting out the current
   second, so LASTSAVE must move), the replication offset and the version.
2. BGSAVE, then poll INFO persistence until the save is done: LASTSAVE moved and
   ``rdb_last_bgsave_status:ok``. A failed save, a killed child or a lost server
   is a BackupError; so is a save that outlasts ``timeout_s``.
3. Copy ``dir``/``dbfilename`` (from CONFIG GET on a local server; the playbook
   passes ``data_dir`` where the data lives) to the staging directory under a
   temporary name, renamed when complete.
4. ``redis-check-rdb`` on the copy: its key count is the artifact's count; its
   header gives the RDB format (``REDIS0010`` -> ``10``).
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from memops.backup.artifacts import BackupError, TenantSummary, TierArtifact
from memops.backup.redis_server import config_get, info, server_version, wait_for
from memops.files import open_atomic

if TYPE_CHECKING:
    import redis

RDB_FILE = "redis-full.rdb"
_CHUNK = 4 * 1024 * 1024


@dataclass(frozen=True)
class RdbCheck:
    """What ``redis-check-rdb`` found in a file it accepted."""

    keys: int
    expires: int
    already_expired: int
    rdb_format: str


def rdb_format(path: Path) -> str:
    """The RDB format version from the file header (``REDIS0010`` -> ``10``)."""
    with path.open("rb") as handle:
        head = handle.read(9)
    if len(head) != 9 or not head.startswith(b"REDIS") or not head[5:].isdigit():
        raise BackupError(f"{path.name}: not an RDB file (header {head[:9]!r})")
    return str(int(head[5:]))


def check_rdb(path: Path, *, timeout_s: float = 600) -> RdbCheck:
    """Run ``redis-check-rdb``; BackupError naming the file and the error it reports."""
    fmt = rdb_format(path)
    tool = shutil.which("redis-check-rdb")
    if tool is None:
        raise BackupError("redis-check-rdb not found: install redis-tools")
    try:
        done = subprocess.run(
            [tool, str(path)], capture_output=True, text=True, timeout=timeout_s, check=False
        )
    except subprocess.TimeoutExpired:
        raise BackupError(f"{path.name}: redis-check-rdb took over {timeout_s:g} s") from None
    output = done.stdout + done.stderr
    if done.returncode != 0 or "RDB looks OK" not in output:
        lines = [line.strip() for line in output.splitlines() if line.strip()]
        marker = "--- RDB ERROR DETECTED ---"
        at = lines.index(marker) + 1 if marker in lines else len(lines) - 1
        reason = lines[at] if 0 <= at < len(lines) else f"exit {done.returncode}"
        raise BackupError(f"{path.name}: redis-check-rdb rejects it: {reason}")

    def number(label: str) -> int:
        found = re.search(rf"\[info\] (\d+) {label}", output)
        return int(found.group(1)) if found else 0

    return RdbCheck(number("keys read"), number("expires"), number("already expired"), fmt)


def backup_full(
    client: redis.Redis,
    staging_dir: Path,
    *,
    data_dir: Path | None = None,
    dbfilename: str | None = None,
    timeout_s: float = 600,
) -> TierArtifact:
    """BGSAVE and copy the RDB into ``staging_dir``; the artifact of the whole tier."""
    import redis as redis_lib

    try:
        source = _rdb_path(client, data_dir, dbfilename)
        version = server_version(client)
        offset, after = bgsave(client, timeout_s=timeout_s)
    except redis_lib.RedisError as exc:
        raise BackupError(f"redis full backup: the server failed during BGSAVE: {exc}") from None
    target = staging_dir / RDB_FILE
    digest = _copy_atomic(source, target)
    try:
        checked = check_rdb(target, timeout_s=timeout_s)
    except BackupError:
        target.unlink(missing_ok=True)
        raise
    return TierArtifact(
        tier="redis",
        scope="full",
        files=(RDB_FILE,),
        tenants={
            "": TenantSummary(
                checked.keys,
                digest,
                {"checksum_of": "rdb-file-sha256", "expires": checked.expires},
            )
        },
        versions={"redis": version, "rdb_format": checked.rdb_format},
        positions={
            "lastsave": int(after["rdb_last_save_time"]),
            "master_repl_offset": int(offset),
        },
    )


def bgsave(client: redis.Redis, *, timeout_s: float) -> tuple[str, dict[str, str]]:
    """BGSAVE once no other save runs, and wait for it: (replication offset, INFO persistence).

    Done when LASTSAVE moved and ``rdb_last_bgsave_status:ok``; a failed save is a BackupError.
    """
    before = _idle_persistence(client, timeout_s)
    lastsave = int(before["rdb_last_save_time"])
    while int(time.time()) <= lastsave:  # a save within this second would not move it
        time.sleep(0.05)
    offset = info(client, "replication").get("master_repl_offset", "0")
    client.execute_command("BGSAVE")
    after = wait_for(
        "BGSAVE to finish",
        lambda: _finished_save(client, lastsave),
        timeout_s=timeout_s,
        interval_s=0.02,
    )
    return offset, after


def _rdb_path(client: redis.Redis, data_dir: Path | None, dbfilename: str | None) -> Path:
    directory = data_dir if data_dir is not None else Path(config_get(client, "dir"))
    return directory / (dbfilename or config_get(client, "dbfilename"))


def _idle_persistence(client: redis.Redis, timeout_s: float) -> dict[str, str]:
    """INFO persistence once no BGSAVE runs (a scheduled one may be under way)."""

    def idle() -> dict[str, str] | None:
        fields = info(client, "persistence")
        return fields if fields.get("rdb_bgsave_in_progress") == "0" else None

    return wait_for("a running BGSAVE to finish", idle, timeout_s=timeout_s)


def _finished_save(client: redis.Redis, lastsave: int) -> dict[str, str] | None:
    """INFO persistence once a BGSAVE begun after ``lastsave`` has finished, else None."""
    fields = info(client, "persistence")
    if fields.get("rdb_bgsave_in_progress") != "0":
        return None
    if fields.get("rdb_last_bgsave_status") != "ok":
        raise BackupError(
            "redis: BGSAVE failed (rdb_last_bgsave_status:"
            f"{fields.get('rdb_last_bgsave_status')}); see the Redis log"
        )
    return fields if int(fields.get("rdb_last_save_time", "0")) > lastsave else None


def _copy_atomic(source: Path, target: Path) -> str:
    """Copy ``source`` to ``target`` under a temporary name; the sha256 of what was copied."""
    digest = hashlib.sha256()
    try:
        with source.open("rb") as reader, open_atomic(target) as writer:
            while chunk := reader.read(_CHUNK):
                digest.update(chunk)
                writer.write(chunk)
    except OSError as exc:
        raise BackupError(f"redis full backup: cannot copy {source}: {exc.strerror}") from None
    return digest.hexdigest()
