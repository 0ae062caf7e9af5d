"""A replicated Redis tier in targets.json: its nodes, its Sentinels, its primary now.

The deploy records every node (``redis@host``) and every Sentinel (``redis_sentinel@host``);
which node is the primary is asked of the Sentinels at the moment it matters, never
stored: a failover may have moved it since the deploy.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from memops.deploy.targets import RedisTarget, SentinelTarget, Targets
from memops.ha.sentinel import SentinelEndpoint, SentinelError, primary_of


def follows(info: Mapping[str, Any], primary: tuple[str, int]) -> bool:
    """INFO replication of a node says: a replica of ``primary`` with its link up."""
    return (
        info.get("role") == "slave"
        and (info.get("master_host"), int(info.get("master_port", 0))) == primary
        and info.get("master_link_status") == "up"
    )


def redis_nodes(targets: Targets) -> list[RedisTarget]:
    return [t for t in targets.components.values() if isinstance(t, RedisTarget)]


def sentinels(targets: Targets) -> list[SentinelTarget]:
    return [t for t in targets.components.values() if isinstance(t, SentinelTarget)]


def endpoints(found: list[SentinelTarget]) -> list[SentinelEndpoint]:
    return [SentinelEndpoint(s.host, s.port, s.password) for s in found]


def is_replicated(targets: Targets) -> bool:
    return len(redis_nodes(targets)) > 1 and bool(sentinels(targets))


def primary_address(targets: Targets, *, timeout_s: float = 2.0) -> tuple[str, int]:
    """host, port of the primary as the Sentinels name it now; SentinelError otherwise."""
    found = sentinels(targets)
    if not found:
        raise SentinelError("no Sentinel is deployed: cannot tell which Redis node is primary")
    master = found[0].master
    address = primary_of(endpoints(found), master, timeout_s=timeout_s)
    if address is None:
        raise SentinelError(f"the Sentinels know no primary named {master!r}")
    return address


def primary_target(targets: Targets, *, timeout_s: float = 2.0) -> RedisTarget:
    """The node the Sentinels name primary, with the credentials the deploy recorded."""
    host, port = primary_address(targets, timeout_s=timeout_s)
    nodes = redis_nodes(targets)
    for node in nodes:
        if (node.host, node.port) == (host, port):
            return node
    # The Sentinels know it by another address than the deploy recorded: same credentials.
    return replace(nodes[0], name=f"redis@{host}", host=host, port=port)


def node_by_host(targets: Targets, host: str) -> RedisTarget:
    """The node of ``host`` (its inventory name, or the address it is reached at)."""
    for name, target in targets.components.items():
        if isinstance(target, RedisTarget) and host in (name.partition("@")[2], target.host):
            return target
    known = ", ".join(sorted(t.name.partition("@")[2] or t.host for t in redis_nodes(targets)))
    raise SentinelError(f"no Redis node {host!r} is deployed (known: {known})")


def replica_in_sync(
    targets: Targets, *, max_idle_s: int = 10, timeout_s: float = 2.0
) -> RedisTarget | None:
    """A replica that follows the current primary with its link up and heard from it within
    ``max_idle_s``; None when there is none (a backup then reads the primary)."""
    from memops.clients import redis_client

    primary = primary_address(targets, timeout_s=timeout_s)
    for node in redis_nodes(targets):
        if (node.host, node.port) == primary:
            continue
        try:
            with redis_client(node, timeout_s=timeout_s) as client:
                info = client.info("replication")
        except Exception:  # a replica down or refusing: try the next one
            continue
        idle_s = int(info.get("master_last_io_seconds_ago", max_idle_s + 1))
        if follows(info, primary) and idle_s <= max_idle_s:
            return node
    return None
