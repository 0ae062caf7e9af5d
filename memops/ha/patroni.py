"""A PostgreSQL tier run by Patroni: who leads, the members, a planned switchover.

Everything is asked of Patroni's REST API (``GET /cluster`` on any member, ``POST
/switchover`` with the REST API's basic auth); memops never promotes a server itself.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from memops.deploy.targets import PostgresTarget, Targets
from memops.errors import Refused

LEADER = "leader"
SYNC_STANDBY = "sync_standby"
REPLICA = "replica"
RUNNING_STATES = ("running", "streaming")  # Patroni 3.0 says running, later ones streaming


class PatroniError(Refused):
    """No Patroni member answered, or the cluster cannot do what was asked."""


@dataclass(frozen=True)
class PatroniMember:
    """One member as Patroni reports it (``GET /cluster``)."""

    name: str
    role: str  # leader, sync_standby, replica (standby_leader in a standby cluster)
    state: str
    host: str
    port: int
    timeline: int | None
    lag_bytes: int | None  # None on the leader, or when Patroni does not know it

    @property
    def endpoint(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self.state in RUNNING_STATES

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "role": self.role,
            "state": self.state,
            "endpoint": self.endpoint,
            "timeline": self.timeline,
            "lag_bytes": self.lag_bytes,
        }


def patroni_targets(targets: Targets) -> list[PostgresTarget]:
    """The PostgreSQL members that Patroni runs (their targets carry its REST URL)."""
    return [
        t for t in targets.components.values() if isinstance(t, PostgresTarget) and t.patroni_url
    ]


def is_patroni(targets: Targets) -> bool:
    return len(patroni_targets(targets)) > 0


def cluster_members(urls: Sequence[str], *, timeout_s: float = 2.0) -> list[PatroniMember]:
    """The members from the first REST API of ``urls`` that answers; PatroniError if none."""
    errors = []
    for url in urls:
        try:
            with httpx.Client(timeout=timeout_s, trust_env=False) as client:
                response = client.get(f"{url.rstrip('/')}/cluster")
            response.raise_for_status()
            return [_member(item) for item in response.json().get("members", [])]
        except (httpx.HTTPError, ValueError) as exc:
            errors.append(f"{url}: {type(exc).__name__}")
    raise PatroniError(f"no Patroni REST API answered ({'; '.join(errors) or 'no member known'})")


def _member(item: dict[str, Any]) -> PatroniMember:
    lag = item.get("lag")
    timeline = item.get("timeline")
    return PatroniMember(
        name=str(item.get("name", "")),
        role=str(item.get("role", "")),
        state=str(item.get("state", "")),
        host=str(item.get("host", "")),
        port=int(item.get("port", 0)),
        timeline=int(timeline) if isinstance(timeline, int) else None,
        lag_bytes=int(lag) if isinstance(lag, int) else None,  # "unknown" while it has none
    )


def leader_of(members: Sequence[PatroniMember]) -> PatroniMember | None:
    """The running leader, or None (an election is under way, or no quorum)."""
    return next((m for m in members if m.role == LEADER and m.running), None)


def follows(members: Sequence[PatroniMember], old: str, new: str | None = None) -> bool:
    """Member ``old`` runs as a standby on the leader's timeline (the one the leader took
    when promoted); with ``new``, that leader is ``new``."""
    lead = leader_of(members)
    found = next((m for m in members if m.name == old), None)
    return (
        lead is not None
        and found is not None
        and lead.name != old
        and (new is None or lead.name == new)
        and found.role != LEADER
        and found.running
        and found.timeline == lead.timeline
    )


def find_leader(targets: Targets, *, timeout_s: float = 2.0) -> PostgresTarget:
    """The target of the member that leads now; PatroniError when none does."""
    members = patroni_targets(targets)
    leader = leader_of(cluster_members(_urls(members), timeout_s=timeout_s))
    if leader is None:
        raise PatroniError("the Patroni cluster has no running leader")
    return target_for(members, leader.host, leader.port)


def target_for(members: Sequence[PostgresTarget], host: str, port: int) -> PostgresTarget:
    for target in members:
        if (target.host, target.port) == (host, port):
            return target
    raise PatroniError(f"Patroni's member {host}:{port} is not in targets.json: deploy again")


def _urls(members: Sequence[PostgresTarget]) -> list[str]:
    return [t.patroni_url for t in members if t.patroni_url]


def request_switchover(
    target: PostgresTarget, *, leader: str, candidate: str | None, timeout_s: float = 30.0
) -> str:
    """POST /switchover to ``target``'s REST API; Patroni's answer, or PatroniError."""
    body: dict[str, str] = {"leader": leader}
    if candidate:
        body["candidate"] = candidate
    auth = (target.patroni_user or "", target.patroni_password or "")
    try:
        with httpx.Client(timeout=timeout_s, trust_env=False) as client:
            response = client.post(
                f"{(target.patroni_url or '').rstrip('/')}/switchover", json=body, auth=auth
            )
    except httpx.HTTPError as exc:
        raise PatroniError(f"switchover: {type(exc).__name__} from {target.endpoint}") from None
    if response.status_code != 200:
        raise PatroniError(f"Patroni refused the switchover: {response.text.strip()[:200]}")
    return response.text.strip()


def wait_for(
    targets: Targets, check: Any, *, wait_s: float, interval_s: float = 0.5
) -> list[PatroniMember] | None:
    """Ask for the members until ``check(members)`` is true; the members, or None on timeout."""
    urls = _urls(patroni_targets(targets))
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        try:
            members = cluster_members(urls, timeout_s=1.0)
        except PatroniError:
            members = []
        if members and check(members):
            return members
        time.sleep(interval_s)
    return None


@dataclass(frozen=True)
class PatroniSwitchoverPlan:
    """A planned switchover: from the leader to a candidate (None: Patroni's choice)."""

    leader: PatroniMember
    candidate: PatroniMember | None
    members: tuple[PatroniMember, ...]

    def describe(self) -> str:
        to = self.candidate.name if self.candidate else "the standby Patroni chooses"
        return f"switch the PostgreSQL leader from {self.leader.name} to {to}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "tier": "postgresql",
            "from": self.leader.name,
            "to": self.candidate.name if self.candidate else None,
            "members": [m.to_dict() for m in self.members],
        }


def plan_switchover(targets: Targets, to: str) -> PatroniSwitchoverPlan:
    """Check that a switchover can happen now; PatroniError (nothing changed) otherwise.

    ``to`` is a member's name (its inventory host) or address. In synchronous mode Patroni
    promotes only the synchronous standby, so another candidate is refused here already.
    """
    if not is_patroni(targets):
        raise PatroniError("postgresql is not run by Patroni in this deployment: no switchover")
    members = cluster_members(_urls(patroni_targets(targets)))
    leader = leader_of(members)
    if leader is None:
        raise PatroniError("the Patroni cluster has no running leader: no switchover now")
    standbys = [m for m in members if m.name != leader.name and m.running]
    candidate = None
    if to:
        candidate = next((m for m in members if to in (m.name, m.host, m.endpoint)), None)
        if candidate is None:
            names = ", ".join(m.name for m in members)
            raise PatroniError(f"--to {to}: not a member of the Patroni cluster ({names})")
        if candidate.name == leader.name:
            raise PatroniError(f"--to {to}: {candidate.name} leads already")
        if not candidate.running:
            raise PatroniError(f"--to {to}: {candidate.name} is {candidate.state}, not running")
        syncs = [m for m in standbys if m.role == SYNC_STANDBY]
        if syncs and candidate.role != SYNC_STANDBY:
            raise PatroniError(
                f"--to {to}: synchronous mode promotes only the synchronous standby "
                f"({', '.join(m.name for m in syncs)}); a switchover to {candidate.name} is refused"
            )
    elif not standbys:
        raise PatroniError("no running standby to switch over to")
    return PatroniSwitchoverPlan(leader, candidate, tuple(members))


def run_switchover(
    targets: Targets, planned: PatroniSwitchoverPlan, *, wait_s: float
) -> dict[str, Any]:
    """Ask Patroni to switch over, wait for the new leader and for the old one to follow it."""
    started = time.monotonic()
    member_targets = patroni_targets(targets)
    leader_target = target_for(member_targets, planned.leader.host, planned.leader.port)
    candidate = planned.candidate.name if planned.candidate else None
    answer = request_switchover(leader_target, leader=planned.leader.name, candidate=candidate)

    def new_leader(members: list[PatroniMember]) -> bool:
        now = leader_of(members)
        return now is not None and now.name != planned.leader.name

    members = wait_for(targets, new_leader, wait_s=wait_s)
    if members is None:
        raise PatroniError(f"no new leader within {wait_s:.0f} s after: {answer}")
    new = leader_of(members)
    assert new is not None  # new_leader() held
    seconds = round(time.monotonic() - started, 2)

    def old_follows(members: list[PatroniMember]) -> bool:
        old = next((m for m in members if m.name == planned.leader.name), None)
        return old is not None and old.role != LEADER and old.running

    rejoined = wait_for(targets, old_follows, wait_s=wait_s) is not None
    return {
        "asked": answer,
        "old": planned.leader.name,
        "new": new.name,
        "timeline": new.timeline,
        "seconds": seconds,
        "old_primary_rejoined": rejoined,
    }


def healthy_standby(targets: Targets, *, max_lag_bytes: int = 1024 * 1024) -> PostgresTarget | None:
    """A running standby at most ``max_lag_bytes`` behind (the synchronous one first), for
    reads that must not load the leader (backups); None when there is none."""
    members = patroni_targets(targets)
    found = cluster_members(_urls(members))
    standbys = [
        m
        for m in found
        if m.role in (SYNC_STANDBY, REPLICA)
        and m.running
        and m.lag_bytes is not None
        and m.lag_bytes <= max_lag_bytes
    ]
    standbys.sort(key=lambda m: (m.role != SYNC_STANDBY, m.lag_bytes or 0))
    return target_for(members, standbys[0].host, standbys[0].port) if standbys else None
