"""One health cycle: probe every component in parallel, then update the streak model.

The model (see DESIGN.md, "Health model"):

* A cycle *fails* when any component's probe still fails after its retries.
  ``failure_streak`` counts consecutive failed cycles and resets to 0 on a
  cycle without probe failures (soft degradations do not count as failures).
* A component whose probe fails is ``degraded`` while its own failure streak is
  below FAILURE_STREAK_THRESHOLD and ``failing`` from then on. Soft problems
  (memory near max, stale save, lag, schema behind) make it ``degraded``.
* The stack state is the worst component state, and ``failing`` whenever the
  stack's ``failure_streak`` has reached the threshold.
* ``queue_depth`` is the number of components whose failure carries over to the
  next cycle (they are re-probed then).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

from memops.deploy.targets import Target, Targets
from memops.exitcodes import EXIT_FAILED, EXIT_FAILING, EXIT_OK
from memops.health.state import StoredState, append_event, load_state, save_state, state_lock
from memops.probes import ProbeFunc, probe_with_retries
from memops.probes.result import (
    RETRY_ATTEMPTED,
    TIMEOUT,
    UNEXPECTED_ERROR,
    ProbeResult,
    State,
    failure,
    result_fields,
    with_soft_finding,
    worst,
)

FAILURE_STREAK_THRESHOLD = 3
# Extra time allowed beyond the probes' own budgets before a probe counts as hung.
DEADLINE_GRACE_S = 1.0

# Cycle reason codes (runtime-events.jsonl)
HEALTHY_CYCLE = "healthy_cycle"
DEGRADED_CYCLE = "degraded_cycle"  # no probe failed, but something is degraded
RETRYABLE_FAILURES_OBSERVED = "retryable_failures_observed"
CASE_PROCESSING_FAILED = "case_processing_failed"
FAILURE_STREAK_THRESHOLD_REACHED = "failure_streak_threshold_reached"
RECOVERED = "recovered"

EXIT_CODES = {State.HEALTHY: EXIT_OK, State.DEGRADED: EXIT_FAILED, State.FAILING: EXIT_FAILING}


@dataclass(frozen=True)
class ComponentHealth:
    state: State
    latency_ms: float
    reason_codes: tuple[str, ...]
    details: dict[str, Any]
    failure_streak: int

    def to_dict(self) -> dict[str, Any]:
        return result_fields(self.state, self.latency_ms, self.reason_codes, self.details)


@dataclass(frozen=True)
class HealthSnapshot:
    state: State
    components: dict[str, ComponentHealth]
    failure_streak: int
    last_cycle_failed: bool
    queue_depth: int
    checked_at: str  # ISO-8601 UTC
    cycle_reason_codes: tuple[str, ...]

    @property
    def exit_code(self) -> int:
        """0 healthy, 1 degraded, 2 failing: the exit status of ``invoke health``."""
        return EXIT_CODES[self.state]

    def to_dict(self) -> dict[str, Any]:
        """The object ``invoke health --json`` prints."""
        return {
            "state": str(self.state),
            "components": {name: comp.to_dict() for name, comp in self.components.items()},
            "failure_streak": self.failure_streak,
            "last_cycle_failed": self.last_cycle_failed,
            "queue_depth": self.queue_depth,
            "checked_at": self.checked_at,
        }

    def event(self) -> dict[str, Any]:
        """The line this cycle appends to runtime-events.jsonl."""
        return {
            "at": self.checked_at,
            "state": str(self.state),
            "reason_codes": list(self.cycle_reason_codes),
            "failure_streak": self.failure_streak,
            "queue_depth": self.queue_depth,
            "components": {name: list(comp.reason_codes) for name, comp in self.components.items()},
        }


def run_cycle(
    targets: Targets | Mapping[str, Target],
    state_dir: str | Path,
    timeout_s: float = 2.0,
    retries: int = 1,
    now: datetime | None = None,
    *,
    probes: Mapping[str, ProbeFunc] | None = None,
    retry_delay_s: float = 0.2,
    soft: Mapping[str, Mapping[str, dict[str, Any]]] | None = None,
) -> HealthSnapshot:
    """Probe all components, update state.json, append the event line, return the snapshot.

    Probing happens outside the state lock; only the read-modify-write of the
    state files is serialised. ``now`` is the cycle's timestamp (default: the
    current time); ``probes`` maps a kind to a probe function that replaces the
    real one (tests use it); ``retry_delay_s`` is the pause before a retry;
    ``soft`` adds soft problems found elsewhere than by the probes (component ->
    reason code -> details), e.g. an unfinished quarantine in quarantine.json.
    """
    components = targets.components if isinstance(targets, Targets) else targets
    results = probe_all(components, timeout_s, retries, probes=probes, retry_delay_s=retry_delay_s)
    results = with_soft_findings(results, soft or {})
    checked_at = now or datetime.now(UTC)
    with state_lock(state_dir) as directory:
        snapshot, stored = evaluate_cycle(results, load_state(directory), checked_at)
        save_state(directory, stored)
        append_event(directory, snapshot.event())
    return snapshot


def probe_all(
    components: Mapping[str, Target],
    timeout_s: float,
    retries: int,
    *,
    probes: Mapping[str, ProbeFunc] | None = None,
    retry_delay_s: float = 0.2,
) -> dict[str, ProbeResult]:
    """Probe every component in parallel, each with retries, within one overall deadline.

    A probe still running at the deadline is reported as a ``timeout`` failure
    and abandoned.
    """
    budget_s = timeout_s * (retries + 1) + retry_delay_s * retries + DEADLINE_GRACE_S
    probes = probes or {}
    futures = {
        name: _in_daemon_thread(
            f"probe-{name}",
            partial(
                probe_with_retries,
                target,
                timeout_s,
                retries,
                retry_delay_s,
                probe=probes.get(target.kind),
            ),
        )
        for name, target in components.items()
    }
    started = time.perf_counter()
    end = time.monotonic() + budget_s
    results = {}
    for name, future in futures.items():
        try:
            results[name] = future.result(timeout=max(end - time.monotonic(), 0))
        except TimeoutError:
            message = f"probe did not finish within {budget_s:g}s"
            results[name] = failure(TIMEOUT, message, started)
        except Exception as exc:  # probes catch their own errors; this is a last resort
            message = f"probe crashed: {type(exc).__name__}"
            results[name] = failure(UNEXPECTED_ERROR, message, started)
    return results


def with_soft_findings(
    results: Mapping[str, ProbeResult], soft: Mapping[str, Mapping[str, dict[str, Any]]]
) -> dict[str, ProbeResult]:
    """``results`` with the soft problems of ``soft`` added (components not probed: ignored)."""
    found = dict(results)
    for name, codes in soft.items():
        for code, details in codes.items():
            if name in found:
                found[name] = with_soft_finding(found[name], code, details)
    return found


def evaluate_cycle(
    results: Mapping[str, ProbeResult], previous: StoredState, now: datetime
) -> tuple[HealthSnapshot, StoredState]:
    """Apply the streak model to one cycle's probe results (pure: no I/O)."""
    components: dict[str, ComponentHealth] = {}
    for name, result in results.items():
        streak = previous.component_failure_streaks.get(name, 0) + 1 if result.failed else 0
        if result.failed:
            state = State.FAILING if streak >= FAILURE_STREAK_THRESHOLD else State.DEGRADED
        else:
            state = result.state
        components[name] = ComponentHealth(
            state=state,
            latency_ms=result.latency_ms,
            reason_codes=result.reason_codes,
            details={**result.details, "failure_streak": streak},
            failure_streak=streak,
        )

    failed = [comp for comp in components.values() if comp.failure_streak > 0]
    cycle_failed = bool(failed)
    failure_streak = previous.failure_streak + 1 if cycle_failed else 0
    stack_state = worst(comp.state for comp in components.values())
    if failure_streak >= FAILURE_STREAK_THRESHOLD:
        stack_state = State.FAILING

    codes = []
    if any(RETRY_ATTEMPTED in comp.reason_codes for comp in components.values()):
        codes.append(RETRY_ATTEMPTED)
    if cycle_failed:
        codes.append(CASE_PROCESSING_FAILED)
        if any(comp.failure_streak < FAILURE_STREAK_THRESHOLD for comp in failed):
            codes.append(RETRYABLE_FAILURES_OBSERVED)
        if failure_streak >= FAILURE_STREAK_THRESHOLD:
            codes.append(FAILURE_STREAK_THRESHOLD_REACHED)
    else:
        if previous.failure_streak > 0:
            codes.append(RECOVERED)
        codes.append(HEALTHY_CYCLE if stack_state is State.HEALTHY else DEGRADED_CYCLE)

    checked_at = _iso_utc(now)
    snapshot = HealthSnapshot(
        state=stack_state,
        components=components,
        failure_streak=failure_streak,
        last_cycle_failed=cycle_failed,
        queue_depth=len(failed),
        checked_at=checked_at,
        cycle_reason_codes=tuple(codes),
    )
    stored = replace(
        previous,
        health_state=str(stack_state),
        failure_streak=failure_streak,
        last_cycle_failed=cycle_failed,
        queue_depth=len(failed),
        last_checked_at=checked_at,
        last_healthy_at=checked_at if stack_state is State.HEALTHY else previous.last_healthy_at,
        last_failure_at=checked_at if cycle_failed else previous.last_failure_at,
        # Components no longer in the targets drop out here.
        component_failure_streaks={n: c.failure_streak for n, c in components.items()},
    )
    return snapshot, stored


def _in_daemon_thread(name: str, func: Callable[[], ProbeResult]) -> Future[ProbeResult]:
    """Run ``func`` in a daemon thread and return a Future for its result.

    Not a ThreadPoolExecutor: its worker threads are joined when the interpreter
    exits, so a probe stuck where no timeout applies (a DNS lookup, for one)
    would hang the command after it had already printed its result.
    """
    future: Future[ProbeResult] = Future()

    def run() -> None:
        if not future.set_running_or_notify_cancel():
            return
        try:
            future.set_result(func())
        except BaseException as exc:  # handed to whoever waits on the future
            future.set_exception(exc)

    threading.Thread(target=run, name=name, daemon=True).start()
    return future


def _iso_utc(moment: datetime) -> str:
    if moment.tzinfo is None:  # naive times are taken to be UTC already
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
