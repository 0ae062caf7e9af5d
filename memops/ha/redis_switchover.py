"""A planned switchover of a replicated Redis tier, done by its Sentinels.

SENTINEL FAILOVER takes no target: to steer it to one replica, that replica's
``replica-priority`` is lowered (preferred) for the switchover and put back afterwards.
The Sentinels still refuse a replica they judge unfit (link down, too far behind).
A switchover killed in between leaves that node preferred; the next one finds it
(``left_preferred``) and puts its priority back before anything else.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from redis.exceptions import RedisError

from memops.clients import redis_client
from memops.deploy.targets import RedisTarget, Targets
from memops.ha import redis_topology
from memops.ha.sentinel import (
    SentinelError,
    request_failover,
    wait_for_current_views,
    wait_for_new_primary,
)

PREFERRED_PRIORITY = 1
DEFAULT_PRIORITY = 100  # Redis' default replica-priority
VIEWS_WAIT_S = 15.0  # a Sentinel reads each replica's INFO every 10 s


@dataclass(frozen=True)
class RedisSwitchoverPlan:
    master: str
    primary: RedisTarget
    candidate: RedisTarget | None  # None: the Sentinels choose
    replicas: tuple[RedisTarget, ...]
    left_preferred: tuple[RedisTarget, ...] = ()  # by an interrupted switchover

    def describe(self) -> str:
        to = self.candidate.endpoint if self.candidate else "the replica the Sentinels choose"
        said = f"switch the Redis primary of {self.master!r} from {self.primary.endpoint} to {to}"
        if self.left_preferred:
            nodes = ", ".join(n.endpoint for n in self.left_preferred)
            said += (
                f", after putting back the replica-priority an interrupted switchover "
                f"left on {nodes}"
            )
        return said

    def to_dict(self) -> dict[str, Any]:
        return {
            "tier": "redis",
            "master": self.master,
            "from": self.primary.endpoint,
            "to": self.candidate.endpoint if self.candidate else None,
            "replicas": [r.endpoint for r in self.replicas],
            "left_preferred": [n.endpoint for n in self.left_preferred],
        }


def plan_switchover(targets: Targets, to: str) -> RedisSwitchoverPlan:
    """Check that a switchover can happen now; SentinelError (nothing changed) otherwise."""
    if not redis_topology.is_replicated(targets):
        raise SentinelError(
            "redis is not replicated in this deployment (one node, or no Sentinel): "
            "nothing to switch over to"
        )
    primary = redis_topology.primary_target(targets)
    replicas = tuple(
        n for n in redis_topology.redis_nodes(targets) if n.endpoint != primary.endpoint
    )
    candidate = None
    if to:
        candidate = redis_topology.node_by_host(targets, to)
        if candidate.endpoint == primary.endpoint:
            raise SentinelError(f"{to} ({candidate.endpoint}) is the primary already")
    chosen = [candidate] if candidate else list(replicas)
    for replica in chosen:
        _require_linked(replica, primary)
    master = redis_topology.sentinels(targets)[0].master
    wait_for_current_views(
        redis_topology.endpoints(redis_topology.sentinels(targets)),
        master,
        (primary.host, primary.port),
        [r.endpoint for r in chosen],
        wait_s=VIEWS_WAIT_S,
    )
    left = tuple(n for n in (primary, *replicas) if _priority(n) == PREFERRED_PRIORITY)
    return RedisSwitchoverPlan(master, primary, candidate, replicas, left)


def _require_linked(replica: RedisTarget, primary: RedisTarget) -> None:
    with redis_client(replica, timeout_s=2) as client:
        info = client.info("replication")
    following = f"{info.get('master_host')}:{info.get('master_port')}"
    if info.get("role") != "slave" or info.get("master_link_status") != "up":
        raise SentinelError(
            f"replica {replica.endpoint} is not in sync (role {info.get('role')}, link "
            f"{info.get('master_link_status')}): a switchover to it could lose writes"
        )
    if following != primary.endpoint:
        raise SentinelError(f"replica {replica.endpoint} follows {following}, not the primary")


def run_switchover(
    targets: Targets, planned: RedisSwitchoverPlan, *, wait_s: float
) -> dict[str, Any]:
    """Ask the Sentinels to switch over and wait for the new primary; what happened."""
    started = time.monotonic()
    sentinels = redis_topology.endpoints(redis_topology.sentinels(targets))
    old = (planned.primary.host, planned.primary.port)
    for node in planned.left_preferred:
        _set_priority(node, DEFAULT_PRIORITY)
    if planned.candidate is not None:
        _set_priority(planned.candidate, PREFERRED_PRIORITY)
    try:
        asked = request_failover(sentinels, planned.master)
        new = wait_for_new_primary(sentinels, planned.master, old, wait_s=wait_s)
    finally:
        if planned.candidate is not None:
            _set_priority(planned.candidate, DEFAULT_PRIORITY)
    seconds = round(time.monotonic() - started, 2)
    rejoined = _wait_for_rejoin(planned.primary, new, wait_s=wait_s)
    if planned.candidate is not None and new != (planned.candidate.host, planned.candidate.port):
        raise SentinelError(
            f"the Sentinels promoted {new[0]}:{new[1]}, not {planned.candidate.endpoint} "
            "(they judged it unfit)"
        )
    return {
        "old_primary_rejoined": rejoined,
        "asked": asked,
        "old": f"{old[0]}:{old[1]}",
        "new": f"{new[0]}:{new[1]}",
        "seconds": seconds,
    }


def _priority(node: RedisTarget) -> int | None:
    """The node's replica-priority now; None when it does not answer (a stopped replica)."""
    try:
        with redis_client(node, timeout_s=2) as client:
            return int(client.config_get("replica-priority")["replica-priority"])
    except (RedisError, OSError, KeyError, ValueError):
        return None


def _set_priority(node: RedisTarget, priority: int) -> None:
    with redis_client(node, timeout_s=2) as client:
        client.config_set("replica-priority", priority)


def _wait_for_rejoin(old: RedisTarget, new: tuple[str, int], *, wait_s: float) -> bool:
    """Wait until the old primary replicates from the new one with its link up (it resyncs
    first); False when it has not within ``wait_s``: the closing probe then says degraded."""
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        try:
            with redis_client(old, timeout_s=2) as client:
                info = client.info("replication")
        except Exception:  # restarting, loading: ask again
            info = {}
        if redis_topology.follows(info, new):
            return True
        time.sleep(0.5)
    return False
