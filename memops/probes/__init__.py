"""Health probes: one per component kind, each bounded by a timeout.

A probe never raises: every outcome, including a bug in the probe, comes back
as a ``ProbeResult``. Retrying is the caller's choice, through
``probe_with_retries``.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, ClassVar

from memops.deploy.targets import Target
from memops.probes.result import RETRY_ATTEMPTED, UNEXPECTED_ERROR, ProbeResult, State, failure

ProbeFunc = Callable[[Any, float], ProbeResult]

DEFAULT_TIMEOUT_S = 2.0  # seconds per probe attempt unless a task or a target says otherwise


class _LazyProbes(Mapping[str, ProbeFunc]):
    """kind -> probe, importing a probe's client library only when that probe is asked for.

    A deploy runs `python -m memops probe KIND` once per service; importing redis,
    psycopg and httpx for each of them was most of its time.
    """

    _WHERE: ClassVar[dict[str, tuple[str, str]]] = {
        "redis": ("memops.probes.redis", "probe_redis"),
        "redis_sentinel": ("memops.probes.sentinel", "probe_sentinel"),
        "postgresql": ("memops.probes.postgresql", "probe_postgresql"),
        "qdrant": ("memops.probes.qdrant", "probe_qdrant"),
        "http": ("memops.probes.http", "probe_http"),
    }

    def __getitem__(self, kind: str) -> ProbeFunc:
        module_name, attribute = self._WHERE[kind]
        probe: ProbeFunc = getattr(importlib.import_module(module_name), attribute)
        return probe

    def __iter__(self) -> Iterator[str]:
        return iter(self._WHERE)

    def __len__(self) -> int:
        return len(self._WHERE)


PROBES: Mapping[str, ProbeFunc] = _LazyProbes()

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "PROBES",
    "ProbeFunc",
    "ProbeResult",
    "State",
    "probe_once",
    "probe_until_healthy",
    "probe_with_retries",
]


def probe_once(target: Target, timeout_s: float, probe: ProbeFunc | None = None) -> ProbeResult:
    """Probe ``target`` once with the probe for its kind (or ``probe``)."""
    started = time.perf_counter()
    func = probe or PROBES[target.kind]
    try:
        return func(target, timeout_s)
    except Exception as exc:  # a bug in a probe must not take the whole cycle down
        return failure(UNEXPECTED_ERROR, f"probe crashed: {type(exc).__name__}", started)


def probe_with_retries(
    target: Target,
    timeout_s: float,
    retries: int = 1,
    retry_delay_s: float = 0.2,
    probe: ProbeFunc | None = None,
) -> ProbeResult:
    """Probe, and probe again up to ``retries`` times while the probe fails.

    Only failures are retried, not soft degradations. When a retry happened the
    result carries ``retry_attempted``, ``details["attempts"]`` and the codes of
    the failed attempts in ``details["earlier_failures"]``.
    """
    result = probe_once(target, timeout_s, probe)
    attempts = 1
    earlier: list[str] = []
    while result.failed and attempts <= retries:
        earlier.extend(result.reason_codes)
        time.sleep(retry_delay_s)
        result = probe_once(target, timeout_s, probe)
        attempts += 1
    if attempts == 1:
        return result
    return ProbeResult(
        state=result.state,
        latency_ms=result.latency_ms,
        reason_codes=(*result.reason_codes, RETRY_ATTEMPTED),
        details={**result.details, "attempts": attempts, "earlier_failures": earlier},
    )


def probe_until_healthy(
    target: Target,
    timeout_s: float,
    retries: int,
    wait_s: float,
    poll_interval_s: float = 1.0,
    probe: ProbeFunc | None = None,
) -> ProbeResult:
    """Re-probe until the result is healthy or ``wait_s`` has passed; return the last result.

    Meant for right after a service (re)start, when it may not accept
    connections or may still be loading its data.
    """
    end = time.monotonic() + wait_s
    while True:
        result = probe_with_retries(target, timeout_s, retries, probe=probe)
        if result.state is State.HEALTHY or time.monotonic() + poll_interval_s >= end:
            return result
        time.sleep(poll_interval_s)
