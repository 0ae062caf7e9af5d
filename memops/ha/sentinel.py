"""Redis Sentinel: who the primary is now, the Sentinels' view, a planned switchover.

memops asks the Sentinels; it never decides which node is the primary itself. Every call
is bounded by a timeout and a Sentinel that does not answer is skipped, so one host down
does not stop an operation the others can answer.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from memops.errors import Refused

if TYPE_CHECKING:
    import redis


class SentinelError(Refused):
    """No Sentinel answered, or they do not know the primary."""


@dataclass(frozen=True)
class SentinelEndpoint:
    host: str
    port: int
    password: str | None = field(default=None, repr=False)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


def sentinel_client(endpoint: SentinelEndpoint, timeout_s: float) -> redis.Redis:
    """A client of one Sentinel, every socket operation bounded, no retries."""
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return redis.Redis(
        host=endpoint.host,
        port=endpoint.port,
        password=endpoint.password,
        socket_connect_timeout=timeout_s,
        socket_timeout=timeout_s,
        retry=Retry(NoBackoff(), 0),
        single_connection_client=True,
        driver_info=None,
        decode_responses=True,
    )


def _views(
    endpoints: Sequence[SentinelEndpoint], master: str, timeout_s: float
) -> tuple[dict[str, tuple[str, int] | None], dict[str, str]]:
    """Each answering Sentinel's primary for ``master`` (None: it knows none); errors by address."""
    views: dict[str, tuple[str, int] | None] = {}
    errors: dict[str, str] = {}
    for endpoint in endpoints:
        try:
            with sentinel_client(endpoint, timeout_s) as client:
                answer = client.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", master)
        except Exception as exc:  # a Sentinel down or refusing: ask the next one
            errors[endpoint.address] = f"{type(exc).__name__}: {exc}"
            continue
        views[endpoint.address] = (str(answer[0]), int(answer[1])) if answer else None
    return views, errors


def primary_of(
    endpoints: Sequence[SentinelEndpoint], master: str, *, timeout_s: float = 2.0
) -> tuple[str, int] | None:
    """The primary most answering Sentinels name; None when none of them knows ``master``.

    SentinelError when no Sentinel answers at all: then nobody can say who the primary is.
    """
    if not endpoints:
        raise SentinelError(f"no Sentinel is deployed for {master!r}")
    views, errors = _views(endpoints, master, timeout_s)
    if not views:
        shown = "; ".join(f"{address}: {error}" for address, error in errors.items())
        raise SentinelError(f"no Sentinel answered for {master!r} ({shown})")
    known = Counter(view for view in views.values() if view is not None)
    if not known:
        return None
    return known.most_common(1)[0][0]


def master_state(endpoint: SentinelEndpoint, master: str, timeout_s: float) -> dict[str, Any]:
    """One Sentinel's SENTINEL MASTER fields for ``master`` (name -> value, as strings)."""
    with sentinel_client(endpoint, timeout_s) as client:
        return _fields(client.execute_command("SENTINEL", "MASTER", master))


def _fields(flat: Any) -> dict[str, Any]:
    """A Sentinel reply of name/value pairs (RESP2 list or RESP3 map) as a dict."""
    if isinstance(flat, dict):
        return {str(k): v for k, v in flat.items()}
    return {str(flat[i]): flat[i + 1] for i in range(0, len(flat) - 1, 2)}


def stale_views(
    endpoints: Sequence[SentinelEndpoint],
    master: str,
    primary: tuple[str, int],
    replicas: Sequence[str],
    *,
    timeout_s: float = 2.0,
) -> list[str]:
    """Each answering Sentinel's view of a replica in ``replicas`` ("host:port") that is not
    "a replica of ``primary`` with its link up", one line each; [] when all are current.

    A Sentinel reads a replica's INFO only every 10 s. Right after a switchover one may
    still take the old primary for a primary: it would turn a replica promoted in that
    window back into a replica (``+convert-to-slave``), and the failover then aborts
    after failover-timeout (seen on the lab with back-to-back switchovers).
    """
    stale = []
    for endpoint in endpoints:
        try:
            with sentinel_client(endpoint, timeout_s) as client:
                views = client.execute_command("SENTINEL", "REPLICAS", master)
        except Exception:  # a Sentinel down reverts nothing
            continue
        for view in map(_fields, views):
            name = str(view.get("name"))
            if name not in replicas:
                continue
            following = (str(view.get("master-host")), int(view.get("master-port") or 0))
            if (
                view.get("role-reported") != "slave"
                or following != primary
                or view.get("master-link-status") != "ok"
            ):
                stale.append(
                    f"Sentinel {endpoint.address} sees {name} as {view.get('role-reported')} "
                    f"(of {following[0]}, link {view.get('master-link-status')})"
                )
    return stale


def wait_for_current_views(
    endpoints: Sequence[SentinelEndpoint],
    master: str,
    primary: tuple[str, int],
    replicas: Sequence[str],
    *,
    wait_s: float,
) -> None:
    """Wait until no Sentinel has a stale view of ``replicas``; SentinelError after
    ``wait_s`` (a little over the Sentinels' 10 s INFO period is enough)."""
    deadline = time.monotonic() + wait_s
    while stale := stale_views(endpoints, master, primary, replicas):
        if time.monotonic() >= deadline:
            raise SentinelError(
                f"the Sentinels' view of the replicas is not current after {wait_s:g}s: "
                f"{'; '.join(stale)}; nothing changed"
            )
        time.sleep(0.5)


# SENTINEL SET accepts these; the role keeps them as the inventory says.
SETTINGS = ("quorum", "down-after-milliseconds", "failover-timeout", "parallel-syncs")


def sync_settings(
    endpoints: Sequence[SentinelEndpoint],
    master: str,
    wanted: dict[str, int],
    *,
    timeout_s: float = 2.0,
) -> dict[str, dict[str, int]]:
    """SENTINEL SET on every Sentinel whose setting differs; what changed, by address.

    Sentinel rewrites its own config file with the new value, so it outlives a restart.
    """
    unknown = sorted(set(wanted) - set(SETTINGS))
    if unknown:
        raise ValueError(f"not a Sentinel setting memops manages: {', '.join(unknown)}")
    changed: dict[str, dict[str, int]] = {}
    for endpoint in endpoints:
        state = master_state(endpoint, master, timeout_s)
        for name, value in wanted.items():
            if str(state.get(name)) != str(value):
                with sentinel_client(endpoint, timeout_s) as client:
                    client.execute_command("SENTINEL", "SET", master, name, str(value))
                changed.setdefault(endpoint.address, {})[name] = int(value)
    return changed


def request_failover(
    endpoints: Sequence[SentinelEndpoint], master: str, *, timeout_s: float = 2.0
) -> str:
    """Ask the first answering Sentinel for a failover of ``master``; its address."""
    errors = []
    for endpoint in endpoints:
        try:
            with sentinel_client(endpoint, timeout_s) as client:
                client.execute_command("SENTINEL", "FAILOVER", master)
        except Exception as exc:
            errors.append(f"{endpoint.address}: {type(exc).__name__}: {exc}")
            continue
        return endpoint.address
    raise SentinelError(f"no Sentinel accepted the failover of {master!r}: {'; '.join(errors)}")


def wait_for_new_primary(
    endpoints: Sequence[SentinelEndpoint],
    master: str,
    old: tuple[str, int],
    *,
    wait_s: float,
    timeout_s: float = 2.0,
) -> tuple[str, int]:
    """Poll until the Sentinels name a primary other than ``old``; SentinelError on time-out."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            now = primary_of(endpoints, master, timeout_s=timeout_s)
        except SentinelError:
            now = None
        if now is not None and now != old:
            return now
        if time.monotonic() >= deadline:
            raise SentinelError(
                f"the Sentinels still name {old[0]}:{old[1]} the primary of {master!r} "
                f"after {wait_s:g}s"
            )
        time.sleep(0.2)
