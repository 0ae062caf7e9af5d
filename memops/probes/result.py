"""The result every probe returns, and the health states it can report."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class State(StrEnum):
    """Health of one component (or of the whole stack), best to worst."""

    HEALTHY = "healthy"
    DEGRADED = "degraded"
    FAILING = "failing"


_SEVERITY = {State.HEALTHY: 0, State.DEGRADED: 1, State.FAILING: 2}


def worst(states: Iterable[State]) -> State:
    """The worst of ``states``; an empty collection counts as healthy."""
    return max(states, key=_SEVERITY.__getitem__, default=State.HEALTHY)


# Reason codes. A probe reports OK when nothing is wrong. The failure codes
# below come with state FAILING and count as a failed probe in the streak model.
OK = "ok"
CONNECT_REFUSED = "connect_refused"
TIMEOUT = "timeout"
# No TCP connection within the timeout, or no route to it: the host itself does not answer
# (down, or cut off from here), not only the service on it.
HOST_UNREACHABLE = "host_unreachable"
AUTH_FAILED = "auth_failed"
DNS_ERROR = "dns_error"
TLS_ERROR = "tls_error"
NOT_READY = "not_ready"
UNEXPECTED_ERROR = "unexpected_error"

RETRY_ATTEMPTED = "retry_attempted"  # added to the codes of a result that needed retries

# Soft problems: the service answers, but something needs attention.
MEMORY_NEAR_MAX = "memory_near_max"
RDB_SAVE_FAILED = "rdb_save_failed"
RDB_SAVE_STALE = "rdb_save_stale"
REPLICA_LINK_DOWN = "replica_link_down"
# Sentinel: fewer Sentinels reachable than a failover needs, or it sees the primary down.
SENTINEL_QUORUM_LOST = "sentinel_quorum_lost"
SENTINEL_PRIMARY_DOWN = "sentinel_primary_down"
REPLICATION_LAG_HIGH = "replication_lag_high"
# A member run by Patroni: its REST API does not answer, the cluster has no running leader,
# or this member is not running under Patroni (stopped, starting, rewinding).
PATRONI_UNREACHABLE = "patroni_unreachable"
PATRONI_NO_LEADER = "patroni_no_leader"
PATRONI_MEMBER_NOT_RUNNING = "patroni_member_not_running"
SCHEMA_BEHIND = "schema_behind"
COLLECTION_NOT_GREEN = "collection_not_green"
# Not from a probe: quarantine.json says a quarantine (or a release) of a namespace
# stopped part way, so the application sees the namespace in some tiers only.
QUARANTINE_PARTIAL = "quarantine_partial"
RELEASE_PARTIAL = "release_partial"


@dataclass(frozen=True)
class ProbeResult:
    """What one probe of one component found.

    ``details`` holds facts for humans and dashboards (never secrets); on a
    failure, ``details["error"]`` is a short human-readable explanation.
    """

    state: State
    latency_ms: float
    reason_codes: tuple[str, ...]
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        """True when the probe itself failed (as opposed to a soft degradation)."""
        return self.state is State.FAILING

    @property
    def error(self) -> str | None:
        return self.details.get("error")

    def to_dict(self) -> dict[str, Any]:
        return result_fields(self.state, self.latency_ms, self.reason_codes, self.details)


def result_fields(
    state: State, latency_ms: float, reason_codes: Sequence[str], details: dict[str, Any]
) -> dict[str, Any]:
    """The JSON shape of a probe result, and of a component in a health snapshot."""
    return {
        "state": str(state),
        "latency_ms": latency_ms,
        "reason_codes": list(reason_codes),
        "details": details,
    }


def elapsed_ms(started: float) -> float:
    """Milliseconds since ``started`` (a ``time.perf_counter()`` value), rounded."""
    return round((time.perf_counter() - started) * 1000, 1)


def failure(code: str, message: str, started: float, **details: Any) -> ProbeResult:
    """A failing result with one failure reason code and a human message."""
    return ProbeResult(State.FAILING, elapsed_ms(started), (code,), {**details, "error": message})


def from_findings(
    findings: dict[str, State], started: float, details: dict[str, Any]
) -> ProbeResult:
    """Combine soft findings (reason code -> state it implies) into one result.

    No findings means healthy with reason code ``ok``.
    """
    if not findings:
        return ProbeResult(State.HEALTHY, elapsed_ms(started), (OK,), details)
    return ProbeResult(worst(findings.values()), elapsed_ms(started), tuple(findings), details)


def with_soft_finding(result: ProbeResult, code: str, details: dict[str, Any]) -> ProbeResult:
    """``result`` with one more soft problem: degraded at least (a failure stays failing)."""
    codes = tuple(c for c in result.reason_codes if c != OK)
    return ProbeResult(
        worst((result.state, State.DEGRADED)),
        result.latency_ms,
        codes if code in codes else (*codes, code),
        {**result.details, **details},
    )
