"""Sentinel probe: PING, its view of the primary, and whether a failover could happen now.

A Sentinel that answers but cannot reach a quorum (SENTINEL CKQUORUM) is degraded: the
primary still serves, but no failover would happen if it went down.
"""

from __future__ import annotations

import time
from typing import Any

from memops.deploy.targets import SentinelTarget
from memops.ha.sentinel import SentinelEndpoint, sentinel_client
from memops.probes.errors import safe_message
from memops.probes.redis import _classify
from memops.probes.result import (
    SENTINEL_PRIMARY_DOWN,
    SENTINEL_QUORUM_LOST,
    ProbeResult,
    State,
    failure,
    from_findings,
)


def probe_sentinel(target: SentinelTarget, timeout_s: float) -> ProbeResult:
    started = time.perf_counter()
    endpoint = SentinelEndpoint(target.host, target.port, target.password)
    try:
        with sentinel_client(endpoint, timeout_s) as client:
            client.ping()
            flat = client.execute_command("SENTINEL", "MASTER", target.master)
            try:
                client.execute_command("SENTINEL", "CKQUORUM", target.master)
                quorum_ok, quorum_says = True, "OK"
            except Exception as exc:  # NOQUORUM / NOGOODSLAVE...: an answer, not a failure
                quorum_ok, quorum_says = False, str(exc)
    except Exception as exc:
        code, message = _classify(exc)
        return failure(code, safe_message(message, target.secrets), started, ping=False)
    master = flat if isinstance(flat, dict) else dict(zip(flat[::2], flat[1::2], strict=False))
    return _assess(master, quorum_ok, quorum_says, started)


def _assess(master: dict[str, Any], quorum_ok: bool, says: str, started: float) -> ProbeResult:
    flags = str(master.get("flags", ""))
    details = {
        "ping": True,
        "role": "sentinel",
        "primary": f"{master.get('ip')}:{master.get('port')}",
        "primary_flags": flags,
        "replicas": int(master.get("num-slaves", 0)),
        "other_sentinels": int(master.get("num-other-sentinels", 0)),
        "quorum": int(master.get("quorum", 0)),
        "config_epoch": int(master.get("config-epoch", 0)),
        "ckquorum": says,
    }
    findings: dict[str, State] = {}
    if not quorum_ok:
        findings[SENTINEL_QUORUM_LOST] = State.DEGRADED
    if "o_down" in flags or "s_down" in flags:
        findings[SENTINEL_PRIMARY_DOWN] = State.DEGRADED
    return from_findings(findings, started, details)
