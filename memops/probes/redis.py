"""Redis probe: PING, role, memory headroom, RDB persistence and replica link."""

from __future__ import annotations

import time
from typing import Any

import redis
from redis import exceptions as redis_errors

from memops.clients import redis_client
from memops.deploy.targets import RedisTarget
from memops.probes.budget import Deadline
from memops.probes.errors import classify_socket_error, safe_message
from memops.probes.result import (
    AUTH_FAILED,
    HOST_UNREACHABLE,
    MEMORY_NEAR_MAX,
    NOT_READY,
    RDB_SAVE_FAILED,
    RDB_SAVE_STALE,
    REPLICA_LINK_DOWN,
    TIMEOUT,
    UNEXPECTED_ERROR,
    ProbeResult,
    State,
    failure,
    from_findings,
)

# A save older than this many RPOs means scheduled snapshots are not happening.
STALE_SAVE_RPO_FACTOR = 2


def probe_redis(target: RedisTarget, timeout_s: float) -> ProbeResult:
    started = time.perf_counter()
    deadline = Deadline(timeout_s)
    try:
        with _connect(target, timeout_s) as client:
            client.ping()
            if deadline.expired:
                return failure(TIMEOUT, f"PING took longer than {timeout_s:g}s", started)
            info = client.info()
    except Exception as exc:
        code, message = _classify(exc)
        return failure(code, safe_message(message, target.secrets), started, ping=False)
    return _assess(info, target, started)


def _connect(target: RedisTarget, timeout_s: float) -> redis.Redis:
    """A client on one connection, opened now, every socket operation bounded."""
    return redis_client(target, timeout_s=timeout_s, single_connection=True)


def _assess(info: dict[str, Any], target: RedisTarget, started: float) -> ProbeResult:
    """Turn INFO output into details and soft findings."""
    findings: dict[str, State] = {}
    details: dict[str, Any] = {
        "ping": True,
        "role": info.get("role"),
        "redis_version": info.get("redis_version"),
    }

    used, maxmemory = int(info.get("used_memory", 0)), int(info.get("maxmemory", 0))
    ratio = round(used / maxmemory, 4) if maxmemory else None  # 0 = no limit set
    details.update(used_memory=used, maxmemory=maxmemory, memory_ratio=ratio)
    if ratio is not None and ratio > target.maxmemory_warn_ratio:
        findings[MEMORY_NEAR_MAX] = State.DEGRADED

    details["rdb_last_bgsave_status"] = info.get("rdb_last_bgsave_status")
    if info.get("rdb_last_bgsave_status") not in (None, "ok"):
        findings[RDB_SAVE_FAILED] = State.DEGRADED

    # Use the server's clock when it reports one, so clock skew cannot fake staleness.
    server_now = info.get("server_time_usec", time.time() * 1_000_000) / 1_000_000
    last_save = info.get("rdb_last_save_time")
    changes = int(info.get("rdb_changes_since_last_save", 0))
    save_age = round(server_now - last_save, 1) if last_save else None
    details.update(rdb_last_save_age_s=save_age, rdb_changes_since_last_save=changes)
    # An idle instance has nothing to save: an old save only matters with pending changes.
    stale_after = STALE_SAVE_RPO_FACTOR * target.rpo_seconds
    if save_age is not None and save_age > stale_after and changes > 0:
        findings[RDB_SAVE_STALE] = State.DEGRADED

    if info.get("role") == "slave":
        link = info.get("master_link_status")
        details.update(
            master_link_status=link,
            master_host=info.get("master_host"),
            master_port=info.get("master_port"),
            master_last_io_seconds_ago=info.get("master_last_io_seconds_ago"),
        )
        if link != "up":
            findings[REPLICA_LINK_DOWN] = State.DEGRADED
    else:
        details["connected_replicas"] = info.get("connected_slaves", 0)
        details["replicas"] = _replicas(info)

    return from_findings(findings, started, details)


def _replicas(info: dict[str, Any]) -> list[dict[str, Any]]:
    """The primary's replicas (INFO's slaveN fields): address, state, lag in bytes and seconds."""
    offset = int(info.get("master_repl_offset", 0))
    found = []
    for index in range(int(info.get("connected_slaves", 0))):
        replica = info.get(f"slave{index}")
        if not isinstance(replica, dict):
            continue
        found.append(
            {
                "address": f"{replica.get('ip')}:{replica.get('port')}",
                "state": replica.get("state"),
                "lag_bytes": max(0, offset - int(replica.get("offset", 0))),
                "lag_s": replica.get("lag"),
            }
        )
    return found


def _classify(exc: Exception) -> tuple[str, str]:
    """(reason code, message) for an exception raised while talking to Redis."""
    auth_errors = (
        redis_errors.AuthenticationError,  # WRONGPASS, NOAUTH
        redis_errors.AuthorizationError,
        redis_errors.NoPermissionError,  # NOPERM: the ACL user may not run PING/INFO
    )
    if isinstance(exc, auth_errors):
        return AUTH_FAILED, f"authentication failed: {exc}"
    if isinstance(exc, redis_errors.BusyLoadingError):
        return NOT_READY, "Redis is loading its dataset"
    if isinstance(exc, redis_errors.MasterDownError):
        return NOT_READY, "replica cannot serve: link with its master is down"
    if isinstance(exc, redis_errors.ResponseError) and str(exc).startswith("BUSY"):
        return NOT_READY, "Redis is busy running a script"
    if isinstance(exc, redis_errors.TimeoutError):
        if str(exc).startswith("Timeout connecting"):  # redis-py's connect, not a command
            return HOST_UNREACHABLE, f"no connection: {exc}: the host does not answer"
        return TIMEOUT, f"timed out: {exc}"
    socket_error = classify_socket_error(exc)
    if socket_error:
        return socket_error
    return UNEXPECTED_ERROR, f"{type(exc).__name__}: {exc}"
