"""What a Redis server says about itself, for the backup engine: INFO fields, versions, waits.

Every call here is read-only. ``refuse_older_server`` is the one check every
restore runs before it touches anything: DUMP payloads and RDB files carry an
RDB format version, and a server older than the one that wrote them cannot read
them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from memops.backup.artifacts import BackupError, RestoreRefused

if TYPE_CHECKING:
    import redis

_T = TypeVar("_T")


def info(client: redis.Redis, section: str) -> dict[str, str]:
    """One INFO section as text fields (``redis_version`` -> ``7.0.15``)."""
    raw = client.execute_command("INFO", section)  # redis-py parses it into a dict
    if isinstance(raw, dict):
        return {str(name): str(value) for name, value in raw.items()}
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    fields: dict[str, str] = {}
    for line in text.splitlines():
        name, sep, value = line.partition(":")
        if sep and not line.startswith("#"):
            fields[name.strip()] = value.strip()
    return fields


def config_get(client: redis.Redis, name: str) -> str:
    """One CONFIG GET value as text."""
    reply = client.execute_command("CONFIG", "GET", name)  # redis-py folds it into a dict
    if isinstance(reply, dict):
        value = reply.get(name.encode()) or reply.get(name)
    else:
        value = reply[1] if reply and len(reply) > 1 else None
    if value is None:
        raise BackupError(f"redis: CONFIG GET {name} returned nothing (renamed or denied?)")
    return value.decode("utf-8", "surrogateescape") if isinstance(value, bytes) else str(value)


def server_version(client: redis.Redis) -> str:
    return info(client, "server").get("redis_version", "")


def version_tuple(version: str) -> tuple[int, ...]:
    """``7.0.15`` -> (7, 0, 15); anything unparsable sorts lowest."""
    parts = []
    for part in version.split("."):
        digits = "".join(ch for ch in part if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


def refuse_older_server(set_versions: dict[str, str], target_version: str) -> None:
    """RestoreRefused when ``target_version`` is older than the server the set came from."""
    set_version = set_versions.get("redis", "")
    if not set_version:
        raise RestoreRefused("refusing to restore: the set records no Redis version")
    if version_tuple(target_version) < version_tuple(set_version):
        rdb = set_versions.get("rdb_format")
        fmt = f" (RDB format {rdb})" if rdb else ""
        raise RestoreRefused(
            f"refusing to restore: the set was taken from Redis {set_version}{fmt} and the "
            f"target runs Redis {target_version}, which is older and cannot read its data; "
            "nothing was changed"
        )


def wait_for(
    what: str, check: Callable[[], _T | None], *, timeout_s: float, interval_s: float = 0.05
) -> _T:
    """Call ``check`` until it returns something other than None; BackupError at the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if result is not None:
            return result
        if time.monotonic() >= deadline:
            raise BackupError(f"redis: timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(interval_s)
