"""Rollout gates: may a rollout phase be promoted? A pure judgement of the health history.

The inputs are what ``invoke health`` leaves in the state directory, already read:
the stored state (``state.json``), the bytes of ``runtime-events.jsonl`` (one line
per health cycle, see ``HealthSnapshot.event``) and the moment to judge at. Each
gate gives a verdict (pass, fail, insufficient) with evidence a person can check.

The history is *insufficient* (not failed) when it cannot show the whole window:
it starts after the window's start, holds too few cycles, has a hole, its newest
cycle is stale, or a line that may belong to the window is malformed. A gate that
sees a failure fails even then: what is seen is seen; the rest cannot pass.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import pairwise
from typing import Any

from memops.health.cycle import CASE_PROCESSING_FAILED, RETRYABLE_FAILURES_OBSERVED, _iso_utc
from memops.health.state import EVENTS_FILE, STATE_FILE, StoredState
from memops.probes.result import RETRY_ATTEMPTED, State

PASS = "pass"
FAIL = "fail"
INSUFFICIENT = "insufficient"

# Health cycles are expected at least every HEALTH_CADENCE (a scheduled `invoke health`);
# a window then needs window / HEALTH_CADENCE cycles. A newest cycle older than MAX_GAP,
# or two cycles further apart than that, leave a part of the window unseen.
HEALTH_CADENCE = timedelta(minutes=10)
MAX_GAP = timedelta(minutes=15)
SHOWN = 5  # malformed lines and gaps named one by one; the rest are counted


@dataclass(frozen=True)
class Phase:
    name: str
    window: timedelta

    @property
    def min_cycles(self) -> int:
        return self.window // HEALTH_CADENCE


PHASES: dict[str, Phase] = {
    phase.name: phase
    for phase in (
        Phase("canary-1", timedelta(minutes=60)),
        Phase("canary-2", timedelta(minutes=120)),
        Phase("canary-3", timedelta(minutes=120)),
        Phase("general-availability", timedelta(hours=24)),
    )
}

# The reason-code families whose count per cycle must stay flat. memops' own probes
# emit no duplicate or malformed codes (those come from the services memops watches),
# so those families are recognised by a word of the code: duplicate_write,
# payload_malformed. The retry family is memops' own two codes.
RETRY_CODES = frozenset({RETRY_ATTEMPTED, RETRYABLE_FAILURES_OBSERVED})
FAMILY_WORDS = {
    "duplicate": frozenset({"duplicate", "duplicated"}),
    "malformed": frozenset({"malformed"}),
}
FAMILIES = ("duplicate", "malformed", "retry")


def family_of(code: str) -> str | None:
    """The flat-count family a reason code belongs to, if any."""
    if code in RETRY_CODES:
        return "retry"
    words = set(code.split("_"))
    for family, family_words in FAMILY_WORDS.items():
        if words & family_words:
            return family
    return None


# --- the history -------------------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    """One health cycle, as a line of runtime-events.jsonl."""

    line: int  # 1-based line number in the file
    at: datetime
    state: str
    reason_codes: tuple[str, ...]
    failure_streak: int
    queue_depth: int
    components: Mapping[str, tuple[str, ...]]

    def codes(self) -> tuple[str, ...]:
        """The cycle's codes, then every component's."""
        return (*self.reason_codes, *(c for codes in self.components.values() for c in codes))

    def count(self, family: str) -> int:
        """Occurrences of the family's codes in this cycle (cycle and component codes)."""
        return sum(1 for code in self.codes() if family_of(code) == family)


@dataclass(frozen=True)
class Malformed:
    line: int
    problem: str

    def __str__(self) -> str:
        return f"{EVENTS_FILE} line {self.line}: {self.problem}"


@dataclass(frozen=True)
class History:
    """The parsed event file: events in file order, and the lines that could not be read."""

    events: tuple[Event, ...] = ()
    malformed: tuple[Malformed, ...] = ()
    unreadable: str = ""  # why the file could not be read at all


def parse_time(text: str) -> datetime:
    """An ISO-8601 time with a zone (``Z`` or an offset); ValueError otherwise."""
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError(f"{text!r} has no time zone")
    return moment


def parse_events(data: bytes) -> History:
    """Every line of runtime-events.jsonl, parsed; a bad line is recorded, not fatal."""
    events: list[Event] = []
    malformed: list[Malformed] = []
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":  # the newline that ends the last line
        lines.pop()
    for number, raw in enumerate(lines, start=1):
        try:
            events.append(_event(number, raw))
        except ValueError as exc:
            malformed.append(Malformed(number, str(exc)))
    return History(tuple(events), tuple(malformed))


def _event(number: int, raw: bytes) -> Event:
    if not raw.strip():
        raise ValueError("empty line")
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ValueError("not UTF-8") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    at = _field(data, "at", str)
    try:
        moment = parse_time(at)
    except ValueError:
        raise ValueError(f"at: not an ISO-8601 time with a zone: {at!r}") from None
    components = _field(data, "components", dict)
    if not all(_strings(codes) for codes in components.values()):
        raise ValueError("components: expected lists of reason codes")
    return Event(
        line=number,
        at=moment,
        state=_field(data, "state", str),
        reason_codes=tuple(_checked_codes(data)),
        failure_streak=_count_field(data, "failure_streak"),
        queue_depth=_count_field(data, "queue_depth"),
        components={name: tuple(codes) for name, codes in components.items()},
    )


def _field(data: Mapping[str, Any], name: str, kind: type) -> Any:
    if name not in data:
        raise ValueError(f"{name}: missing")
    value = data[name]
    if not isinstance(value, kind):
        raise ValueError(f"{name}: expected {kind.__name__}, got {type(value).__name__}")
    return value


def _count_field(data: Mapping[str, Any], name: str) -> int:
    value = _field(data, name, int)
    if isinstance(value, bool) or value < 0:
        raise ValueError(f"{name}: expected a whole number from 0, got {value!r}")
    return int(value)


def _checked_codes(data: Mapping[str, Any]) -> list[str]:
    codes = _field(data, "reason_codes", list)
    if not _strings(codes):
        raise ValueError("reason_codes: expected a list of strings")
    return codes


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


# --- the verdict -------------------------------------------------------------------------


@dataclass(frozen=True)
class GateResult:
    name: str
    verdict: str
    evidence: str

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "verdict": self.verdict, "evidence": self.evidence}


@dataclass(frozen=True)
class Window:
    """The events that judge a phase at one moment.

    ``baseline`` is the last cycle at or before the window's start (the state the
    window opened with); ``cycles`` those after it up to ``now``, oldest first.
    """

    phase: Phase
    now: datetime
    baseline: Event | None
    cycles: tuple[Event, ...]
    problems: tuple[str, ...]
    ignored_after_now: int

    @property
    def start(self) -> datetime:
        return self.now - self.phase.window

    @property
    def sufficient(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        newest = self.cycles[-1] if self.cycles else self.baseline
        return {
            "verdict": PASS if self.sufficient else INSUFFICIENT,
            "problems": list(self.problems),
            "cycles": len(self.cycles),
            "min_cycles": self.phase.min_cycles,
            "baseline_at": _iso(self.baseline.at) if self.baseline else None,
            "newest_at": _iso(newest.at) if newest else None,
            "ignored_after_now": self.ignored_after_now,
        }


def window_of(phase: Phase, history: History, now: datetime) -> Window:
    """Pick the window's events and say what keeps them from covering the window."""
    start = now - phase.window
    seen = sorted((e for e in history.events if e.at <= now), key=lambda e: e.at)
    before = [e for e in seen if e.at <= start]
    baseline = before[-1] if before else None
    cycles = tuple(e for e in seen if e.at > start)
    problems: list[str] = [f"{EVENTS_FILE}: {history.unreadable}"] if history.unreadable else []
    # Lines are appended in time order: a bad line after the baseline's may be in the window.
    relevant = [m for m in history.malformed if baseline is None or m.line > baseline.line]
    problems.extend(str(m) for m in relevant[:SHOWN])
    if len(relevant) > SHOWN:
        problems.append(f"{EVENTS_FILE}: {len(relevant) - SHOWN} more malformed line(s)")
    if not seen:
        problems.append(f"{EVENTS_FILE}: no health cycle recorded up to {_iso(now)}")
    else:
        if baseline is None:
            problems.append(
                f"the history starts at {_iso(seen[0].at)}, after the window's start "
                f"{_iso(start)} ({_minutes(phase.window)} needed)"
            )
        if len(cycles) < phase.min_cycles:
            problems.append(
                f"{len(cycles)} cycle(s) in the window, at least {phase.min_cycles} needed "
                f"(one every {_minutes(HEALTH_CADENCE)})"
            )
        newest = seen[-1]
        if now - newest.at > MAX_GAP:
            problems.append(
                f"the newest cycle, at {_iso(newest.at)} (line {newest.line}), is "
                f"{_minutes(now - newest.at)} old (at most {_minutes(MAX_GAP)})"
            )
        judged = ([baseline] if baseline else []) + list(cycles)
        gaps = [(a, b) for a, b in pairwise(judged) if b.at - a.at > MAX_GAP]
        problems.extend(
            f"no cycle between {_iso(older.at)} and {_iso(newer.at)} "
            f"(lines {older.line} and {newer.line}: a gap of "
            f"{_minutes(newer.at - older.at)}, at most {_minutes(MAX_GAP)})"
            for older, newer in gaps[:SHOWN]
        )
        if len(gaps) > SHOWN:
            problems.append(f"{len(gaps) - SHOWN} more gap(s) over {_minutes(MAX_GAP)}")
    ignored = sum(1 for e in history.events if e.at > now)
    return Window(phase, now, baseline, cycles, tuple(problems), ignored)


@dataclass(frozen=True)
class Report:
    phase: Phase
    window: Window
    gates: tuple[GateResult, ...]

    @property
    def verdict(self) -> str:
        verdicts = {gate.verdict for gate in self.gates}
        if FAIL in verdicts:
            return FAIL
        if INSUFFICIENT in verdicts or not self.window.sufficient:
            return INSUFFICIENT
        return PASS

    @property
    def failed(self) -> list[str]:
        return [gate.name for gate in self.gates if gate.verdict == FAIL]

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.verdict == PASS,
            "phase": self.phase.name,
            "verdict": self.verdict,
            "failed": self.failed,
            "now": _iso(self.window.now),
            "window_start": _iso(self.window.start),
            "window_minutes": int(self.phase.window.total_seconds() // 60),
            "history": self.window.to_dict(),
            "gates": [gate.to_dict() for gate in self.gates],
        }


def evaluate(
    phase: Phase,
    state: StoredState | None,
    history: History,
    now: datetime,
    *,
    state_problem: str = "",
) -> Report:
    """Judge every gate of ``phase`` at ``now``.

    ``state`` is None when state.json is missing or unreadable (``state_problem``
    says which); the state gates are then insufficient.
    """
    window = window_of(phase, history, now)
    gates = (
        *state_gates(state, now, state_problem),
        no_case_processing_failed(window),
        reason_codes_flat(window),
    )
    return Report(phase, window, gates)


# --- the gates ---------------------------------------------------------------------------

STATE_GATES = (
    "health_healthy",
    "failure_streak_zero",
    "last_cycle_not_failed",
    "queue_depth_at_most_1",
)


def state_gates(state: StoredState | None, now: datetime, problem: str = "") -> list[GateResult]:
    """The gates on the current state (state.json), in STATE_GATES order."""
    unusable = problem or _state_unusable(state, now)
    if unusable or state is None:
        reason = unusable or f"no {STATE_FILE}"
        return [GateResult(name, INSUFFICIENT, reason) for name in STATE_GATES]
    where = f"{STATE_FILE} (checked {state.last_checked_at})"
    return [
        _check(
            "health_healthy",
            state.health_state == str(State.HEALTHY),
            f"{where}: health_state {state.health_state}",
        ),
        _check(
            "failure_streak_zero",
            state.failure_streak == 0,
            f"{where}: failure_streak {state.failure_streak}",
        ),
        _check(
            "last_cycle_not_failed",
            not state.last_cycle_failed,
            f"{where}: last_cycle_failed {str(state.last_cycle_failed).lower()}",
        ),
        _check(
            "queue_depth_at_most_1",
            state.queue_depth <= 1,
            f"{where}: queue_depth {state.queue_depth}",
        ),
    ]


def _state_unusable(state: StoredState | None, now: datetime) -> str:
    if state is None:
        return ""
    if state.last_checked_at is None:
        return f"{STATE_FILE} has no last_checked_at: no health cycle has run"
    try:
        checked = parse_time(state.last_checked_at)
    except ValueError:
        return f"{STATE_FILE}: last_checked_at {state.last_checked_at!r} is not an ISO-8601 time"
    if now - checked > MAX_GAP:
        return (
            f"{STATE_FILE} was last written at {state.last_checked_at}, "
            f"{_minutes(now - checked)} ago (at most {_minutes(MAX_GAP)})"
        )
    return ""


def no_case_processing_failed(window: Window) -> GateResult:
    name = "no_case_processing_failed"
    hits = [e for e in window.cycles if CASE_PROCESSING_FAILED in e.codes()]
    if hits:
        first = hits[0]
        return GateResult(
            name,
            FAIL,
            f"{CASE_PROCESSING_FAILED} in {len(hits)} of {len(window.cycles)} cycle(s) of the "
            f"window, first at {_iso(first.at)} ({EVENTS_FILE} line {first.line})",
        )
    seen = f"none in {len(window.cycles)} cycle(s){_span(window.cycles)}"
    if not window.sufficient:
        return GateResult(name, INSUFFICIENT, f"{seen}, but the history does not cover the window")
    return GateResult(name, PASS, seen)


def reason_codes_flat(window: Window) -> GateResult:
    """No family's count rises above its count when the window opened.

    The level at the start is the baseline cycle's (or the first cycle's when the
    history starts inside the window); every later cycle must stay at or below it.
    """
    name = "reason_codes_flat"
    judged = ([window.baseline] if window.baseline else []) + list(window.cycles)
    if not judged:
        return GateResult(name, INSUFFICIENT, "no cycle to count reason codes in")
    first, rest = judged[0], judged[1:]
    rises = []
    for family in FAMILIES:
        level = first.count(family)
        above = [e for e in rest if e.count(family) > level]
        if above:
            peak = max(above, key=lambda e: e.count(family))
            rises.append(
                f"{family}: {level} at {_iso(first.at)}, {peak.count(family)} at "
                f"{_iso(peak.at)} ({EVENTS_FILE} line {peak.line}; {len(above)} cycle(s) above)"
            )
    if rises:
        return GateResult(name, FAIL, "; ".join(rises))
    levels = ", ".join(f"{family} {first.count(family)}" for family in FAMILIES)
    flat = f"no count above the window's start ({levels}) in the {len(rest)} cycle(s) after it"
    if not window.sufficient:
        return GateResult(name, INSUFFICIENT, f"{flat}, but the history does not cover the window")
    return GateResult(name, PASS, flat)


def _check(name: str, ok: bool, evidence: str) -> GateResult:
    return GateResult(name, PASS if ok else FAIL, evidence)


def _span(events: Sequence[Event]) -> str:
    return f" from {_iso(events[0].at)} to {_iso(events[-1].at)}" if events else ""


def _iso(moment: datetime) -> str:
    return _iso_utc(moment)


def _minutes(delta: timedelta) -> str:
    minutes = delta.total_seconds() / 60
    if minutes >= 120 and minutes % 60 == 0:
        return f"{minutes / 60:g} h"
    return f"{minutes:.0f} min" if minutes >= 1 else f"{delta.total_seconds():.0f} s"
