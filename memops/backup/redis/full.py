"""Full Redis backup: BGSAVE, wait for it, copy the RDB, check it with ``redis-check-rdb``.

1. Wait for any BGSAVE already running, note LASTSAVE (waiting out the current
   second, so LASTSAVE must move), the replication offset and the version.
2. BGSAVE, then poll INFO persistence until the save is done: LASTSAVE moved and
   ``rdb_last_bgsave_status:ok``. A failed save, a killed child or a lost server
   is a BackupError; so is a save that outlasts ``timeout_s``.
3. Copy ``dir``/``dbfilename`` (from CONFIG GET; the playbook passes ``data_dir``
   where the data lives) to the staging directory under a temporary name, renamed
   when complete, when the server runs on this machine: its pid (INFO server) is a
   local redis-server whose process title names its port. Otherwise the file at that
   path would be another server's, or none: the RDB is fetched over the network
   instead, as a replica gets it (``redis-cli --rdb``, the password in its
   environment, never argv), and without the target to fetch it from the backup is
   refused.
4. ``redis-check-rdb`` on the copy: its key count is the artifact's count; its
   header gives the RDB format (``REDIS0010`` -> ``10``).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from memops.backup.artifacts import BackupError, TenantSummary, TierArtifact
from memops.backup.redis.server import config_get, info, server_version, wait_for
from memops.files import fsync_dir, open_atomic

if TYPE_CHECKING:
    import redis

    from memops.deploy.targets import RedisTarget

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
    server: RedisTarget | None = None,
    data_dir: Path | None = None,
    dbfilename: str | None = None,
    fetch: str = "auto",
    timeout_s: float = 600,
) -> TierArtifact:
    """BGSAVE and copy the RDB into ``staging_dir``; the artifact of the whole tier.

    ``fetch``: "auto" copies the file when the server is on this machine (or
    ``data_dir`` says where it is) and fetches it over the network from ``server``
    otherwise; "network" always fetches it.
    """
    import redis as redis_lib

    target = staging_dir / RDB_FILE
    try:
        local = fetch != "network" and (data_dir is not None or _server_is_here(client))
        version = server_version(client)
        if local:
            source = _rdb_path(client, data_dir, dbfilename)
            offset, after = bgsave(client, timeout_s=timeout_s)
        else:
            if server is None:
                raise BackupError(
                    "redis full backup: the server does not run on this machine, so its "
                    "RDB file is not here to copy; set backup_host to the Redis host (or "
                    "back up with --namespace)"
                )
            offset = info(client, "replication").get("master_repl_offset", "0")
    except redis_lib.RedisError as exc:
        raise BackupError(f"redis full backup: the server failed during BGSAVE: {exc}") from None
    if local:
        digest = _copy_atomic(source, target)
    else:
        assert server is not None  # refused above, before the BGSAVE
        digest = fetch_rdb(server, target, timeout_s=timeout_s)
        after = info(client, "persistence")
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


def _server_is_here(client: redis.Redis) -> bool:
    """Whether the server runs on this machine: INFO's pid is a local redis-server process
    whose title (``redis-server host:port``) names the server's port."""
    fields = info(client, "server")
    pid, port = fields.get("process_id", ""), fields.get("tcp_port", "")
    if not pid.isdigit():
        return False
    try:
        title = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return False
    return "redis-server" in title and (port == "0" or f":{port}" in title)


def fetch_rdb(server: RedisTarget, target: Path, *, timeout_s: float) -> str:
    """The server's RDB, as a replica receives it (``redis-cli --rdb``), into ``target``
    under a temporary name; its sha256. The password goes in the environment."""
    tool = shutil.which("redis-cli")
    if tool is None:
        raise BackupError("redis-cli not found: install redis-tools (it fetches the RDB)")
    argv = [tool, "-h", server.host, "-p", str(server.port)]
    if server.username:
        argv += ["--user", server.username]
    if server.tls:
        argv += ["--tls"] + (["--cacert", server.ca_file] if server.ca_file else [])
    env = {k: v for k, v in os.environ.items() if k != "REDISCLI_AUTH"}
    if server.password:
        env["REDISCLI_AUTH"] = server.password
    part = target.with_name(f".{target.name}.part")
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        done = subprocess.run(
            [*argv, "--rdb", str(part)],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            env=env,
            check=False,
        )
        if done.returncode != 0 or not part.is_file():
            reason = (done.stderr or done.stdout).strip().splitlines()
            raise BackupError(
                "redis full backup: fetching the RDB over the network failed: "
                + (reason[-1] if reason else f"redis-cli exit {done.returncode}")
            )
        digest = hashlib.sha256()
        with part.open("rb") as reader:
            while chunk := reader.read(_CHUNK):
                digest.update(chunk)
        os.replace(part, target)
        fsync_dir(target.parent)
    except subprocess.TimeoutExpired:
        raise BackupError(f"redis full backup: the RDB took over {timeout_s:g} s") from None
    finally:
        part.unlink(missing_ok=True)
    return digest.hexdigest()


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
