"""`invoke rollout.gate`: judge a rollout phase's gates from the inventory's health history.

The only I/O is here: read state.json and runtime-events.jsonl from the state
directory; ``memops.health.rollout`` judges them. Exit 0 when every gate passes, 1 when
one fails, 3 (EXIT_INSUFFICIENT) when none fails but the history cannot show the
whole window.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from memops.exitcodes import EXIT_FAILED, EXIT_INSUFFICIENT, EXIT_OK
from memops.health import rollout
from memops.health.state import EVENTS_FILE, STATE_FILE, HealthStateError, StoredState, load_state
from memops.ops import options
from memops.ops.runner import Context, Operation, Outcome

EXIT_CODES = {
    rollout.PASS: EXIT_OK,
    rollout.FAIL: EXIT_FAILED,
    rollout.INSUFFICIENT: EXIT_INSUFFICIENT,
}


def gate(context: Context, *, phase: str, now: datetime | None) -> Outcome:
    directory = context.require_inventory().state_dir
    state, problem = read_state(directory)
    history = read_history(directory)
    report = rollout.evaluate(
        rollout.PHASES[phase], state, history, now or datetime.now(UTC), state_problem=problem
    )
    return Outcome(
        EXIT_CODES[report.verdict],
        report.to_dict(),
        lines=report_lines(report),
        result=report.verdict,
        audit={"phase": phase, "verdict": report.verdict, "failed": report.failed},
    )


def read_state(directory: Path) -> tuple[StoredState | None, str]:
    """The stored state, or None and why it cannot be used."""
    if not (directory / STATE_FILE).exists():
        return None, f"no {STATE_FILE} in {directory}: no health cycle has run"
    try:
        return load_state(directory), ""
    except HealthStateError as exc:
        return None, str(exc)


def read_history(directory: Path) -> rollout.History:
    """runtime-events.jsonl, parsed; no file is an empty history."""
    try:
        return rollout.parse_events((directory / EVENTS_FILE).read_bytes())
    except FileNotFoundError:
        return rollout.History()
    except OSError as exc:
        return rollout.History(unreadable=f"unreadable ({exc.strerror})")


def report_lines(report: rollout.Report) -> list[str]:
    document = report.to_dict()
    window = report.window
    lines = [
        f"rollout gate {report.phase.name}: {report.verdict.upper()} (window "
        f"{document['window_minutes']} min, {document['window_start']} to {document['now']})"
    ]
    if window.sufficient:
        lines.append(f"history: {len(window.cycles)} cycle(s) in the window, it covers the window")
    else:
        lines.append("history: insufficient")
        lines.extend(f"  - {problem}" for problem in window.problems)
    width = max(len(g.name) for g in report.gates)
    lines.extend(f"{g.name:<{width}}  {g.verdict:<12}  {g.evidence}" for g in report.gates)
    return lines


def _phase(name: str, raw: Any) -> str:
    if raw in (None, ""):
        known = ", ".join(rollout.PHASES)
        raise options.OptionError(f"{options.flag_name(name)}: is required; known: {known}")
    return options.choices(lambda: rollout.PHASES)(name, raw)


def _moment(name: str, raw: Any) -> datetime | None:
    """--now: judge at this time instead of the current one (replaying a history)."""
    if raw in (None, ""):
        return None
    try:
        return rollout.parse_time(str(raw).strip())
    except ValueError:
        raise options.OptionError(
            f"{options.flag_name(name)}: expected an ISO-8601 time with a zone "
            f"(2026-12-03T10:00:00Z), got {str(raw)!r}"
        ) from None


GATE = Operation(
    "rollout.gate",
    gate,
    {
        "phase": options.described(_phase, "canary-1, canary-2, canary-3 or general-availability"),
        "now": options.described(_moment, "judge at this ISO-8601 time with a zone (default: now)"),
    },
)
