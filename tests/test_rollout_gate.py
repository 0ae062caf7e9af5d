"""rollout.gate: each gate, each way the history can be insufficient, and the task end to end.

The pure tests build their histories with the health model's own pure step
(``evaluate_cycle`` and ``HealthSnapshot.event``), so the events have exactly the
shape ``invoke health`` writes. The end-to-end tests let the real ``run_cycle``
(fake probes, real state files) write the state directory, then run the operation
through the runner and, once, the task through the real ``invoke``.
"""

from __future__ import annotations

import inspect
import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from op_calls import call
from root_tasks import root_collection
from runbook_steps import parse

from memops import paths
from memops.deploy.targets import PostgresTarget, RedisTarget
from memops.exitcodes import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_INSUFFICIENT, EXIT_OK
from memops.health import rollout
from memops.health.cycle import (
    CASE_PROCESSING_FAILED,
    HEALTHY_CYCLE,
    RETRYABLE_FAILURES_OBSERVED,
    evaluate_cycle,
    run_cycle,
)
from memops.health.state import EVENTS_FILE, STATE_FILE, StoredState
from memops.ops.rollout import GATE
from memops.ops.runner import run_operation
from memops.probes.result import RETRY_ATTEMPTED, ProbeResult, State

NOW = datetime(2026, 12, 3, 10, 0, 0, tzinfo=UTC)
CANARY_1 = rollout.PHASES["canary-1"]

HEALTHY = ProbeResult(State.HEALTHY, 1.0, ("ok",), {})
RETRIED = ProbeResult(State.HEALTHY, 1.0, ("ok", RETRY_ATTEMPTED), {"attempts": 2})
REFUSED = ProbeResult(State.FAILING, 1.0, ("connect_refused", RETRY_ATTEMPTED), {"error": "x"})
DUPLICATE = ProbeResult(State.DEGRADED, 1.0, ("duplicate_write",), {})
MALFORMED = ProbeResult(State.DEGRADED, 1.0, ("payload_malformed",), {})

Results = Mapping[str, ProbeResult]


def results(redis: ProbeResult = HEALTHY, postgresql: ProbeResult = HEALTHY) -> Results:
    return {"redis": redis, "postgresql": postgresql}


def every(step: int, oldest: int, newest: int = 0) -> list[int]:
    """Minutes before NOW, oldest first: oldest, oldest - step, ... down to newest."""
    return list(range(oldest, newest - 1, -step))


def history(
    minutes: Iterable[int], special: Mapping[int, Results] | None = None
) -> tuple[StoredState, bytes]:
    """The state and event bytes after healthy cycles at those minutes before NOW.

    ``special`` gives other probe results for some of the minutes.
    """
    state, lines = StoredState(), []
    for minute in minutes:
        chosen = (special or {}).get(minute, results())
        snapshot, state = evaluate_cycle(chosen, state, NOW - timedelta(minutes=minute))
        lines.append(json.dumps(snapshot.event(), sort_keys=True))
    return state, "".join(line + "\n" for line in lines).encode()


def judge(
    state: StoredState | None, events: bytes, phase: rollout.Phase = CANARY_1, now: datetime = NOW
) -> rollout.Report:
    return rollout.evaluate(phase, state, rollout.parse_events(events), now)


def verdicts(report: rollout.Report) -> dict[str, str]:
    return {gate.name: gate.verdict for gate in report.gates}


def evidence(report: rollout.Report, name: str) -> str:
    [gate] = [gate for gate in report.gates if gate.name == name]
    return gate.evidence


ALL_GATES = (*rollout.STATE_GATES, "no_case_processing_failed", "reason_codes_flat")


# --- phases and families ---------------------------------------------------------------


def test_phase_windows_and_the_cycles_they_need() -> None:
    windows = {name: phase.window for name, phase in rollout.PHASES.items()}
    assert windows == {
        "canary-1": timedelta(minutes=60),
        "canary-2": timedelta(minutes=120),
        "canary-3": timedelta(minutes=120),
        "general-availability": timedelta(hours=24),
    }
    assert [phase.min_cycles for phase in rollout.PHASES.values()] == [6, 12, 12, 144]


def test_reason_code_families() -> None:
    assert rollout.family_of(RETRY_ATTEMPTED) == "retry"
    assert rollout.family_of(RETRYABLE_FAILURES_OBSERVED) == "retry"
    assert rollout.family_of("duplicate_write") == "duplicate"
    assert rollout.family_of("payload_malformed") == "malformed"
    for code in (CASE_PROCESSING_FAILED, HEALTHY_CYCLE, "ok", "connect_refused"):
        assert rollout.family_of(code) is None, code


# --- the gates -------------------------------------------------------------------------


def test_healthy_cycles_covering_the_window_pass_every_gate() -> None:
    state, events = history(every(5, 65))
    report = judge(state, events)
    assert verdicts(report) == dict.fromkeys(ALL_GATES, rollout.PASS)
    assert report.verdict == rollout.PASS and report.window.sufficient
    assert len(report.window.cycles) == 12
    assert report.window.baseline is not None  # the last cycle at or before the start
    assert report.window.baseline.at == NOW - timedelta(minutes=60)
    assert evidence(report, "health_healthy") == (
        "state.json (checked 2026-12-03T10:00:00Z): health_state healthy"
    )


@pytest.mark.parametrize(
    ("change", "failing", "shown"),
    [
        ({"health_state": "degraded"}, "health_healthy", "health_state degraded"),
        ({"failure_streak": 2}, "failure_streak_zero", "failure_streak 2"),
        ({"last_cycle_failed": True}, "last_cycle_not_failed", "last_cycle_failed true"),
        ({"queue_depth": 2}, "queue_depth_at_most_1", "queue_depth 2"),
    ],
)
def test_each_state_gate_fails_alone(change: dict[str, Any], failing: str, shown: str) -> None:
    state, events = history(every(5, 65))
    report = judge(StoredState(**{**state.to_dict(), **change}), events)
    assert [name for name, verdict in verdicts(report).items() if verdict != rollout.PASS] == [
        failing
    ]
    assert report.verdict == rollout.FAIL and report.failed == [failing]
    assert shown in evidence(report, failing)


def test_queue_depth_of_one_passes() -> None:
    state, events = history(every(5, 65))
    report = judge(StoredState(**{**state.to_dict(), "queue_depth": 1}), events)
    assert verdicts(report)["queue_depth_at_most_1"] == rollout.PASS


def test_one_case_processing_failed_cycle_in_the_window_fails_and_names_its_line() -> None:
    # The failed cycle is 30 min ago; the stack has recovered since (state gates pass).
    state, events = history(every(5, 65), {30: results(redis=REFUSED)})
    report = judge(state, events)
    assert verdicts(report)["no_case_processing_failed"] == rollout.FAIL
    assert evidence(report, "no_case_processing_failed") == (
        "case_processing_failed in 1 of 12 cycle(s) of the window, first at "
        "2026-12-03T09:30:00Z (runtime-events.jsonl line 8)"
    )
    assert verdicts(report)["health_healthy"] == rollout.PASS
    assert report.verdict == rollout.FAIL


def test_a_failed_cycle_before_the_window_does_not_count() -> None:
    state, events = history(every(5, 90), {80: results(redis=REFUSED)})
    report = judge(state, events)
    assert verdicts(report)["no_case_processing_failed"] == rollout.PASS
    assert report.verdict == rollout.PASS


def test_growing_retry_counts_fail_reason_codes_flat_only() -> None:
    special = {20: results(redis=RETRIED), 10: results(redis=RETRIED, postgresql=RETRIED)}
    state, events = history(every(5, 65), special)
    report = judge(state, events)
    assert report.failed == ["reason_codes_flat"]
    # One retried component: the cycle's retry_attempted and the component's; two: three.
    assert evidence(report, "reason_codes_flat") == (
        "retry: 0 at 2026-12-03T09:00:00Z, 3 at 2026-12-03T09:50:00Z "
        "(runtime-events.jsonl line 12; 2 cycle(s) above)"
    )


@pytest.mark.parametrize(("result", "family"), [(DUPLICATE, "duplicate"), (MALFORMED, "malformed")])
def test_new_duplicate_or_malformed_codes_fail_reason_codes_flat(
    result: ProbeResult, family: str
) -> None:
    state, events = history(every(5, 65), {40: results(postgresql=result)})
    report = judge(state, events)
    assert verdicts(report)["reason_codes_flat"] == rollout.FAIL
    assert evidence(report, "reason_codes_flat").startswith(f"{family}: 0 at ")


def test_counts_that_stay_at_or_below_the_window_start_are_flat() -> None:
    # Retries at the window's start (the baseline cycle) and as many or fewer after it.
    special = {m: results(redis=RETRIED, postgresql=RETRIED) for m in (65, 60, 55)}
    special |= {m: results(redis=RETRIED) for m in (50, 45, 40)}
    state, events = history(every(5, 65), special)
    report = judge(state, events)
    assert verdicts(report)["reason_codes_flat"] == rollout.PASS
    assert "retry 3" in evidence(report, "reason_codes_flat")


# --- insufficient history --------------------------------------------------------------


def insufficient_only(report: rollout.Report) -> None:
    assert report.verdict == rollout.INSUFFICIENT
    assert not report.failed
    assert not report.window.sufficient


def test_a_history_shorter_than_the_window_is_insufficient() -> None:
    state, events = history(every(5, 40))
    report = judge(state, events)
    insufficient_only(report)
    assert report.window.problems == (
        "the history starts at 2026-12-03T09:20:00Z, after the window's start "
        "2026-12-03T09:00:00Z (60 min needed)",
    )
    assert verdicts(report)["no_case_processing_failed"] == rollout.INSUFFICIENT
    assert verdicts(report)["reason_codes_flat"] == rollout.INSUFFICIENT
    assert verdicts(report)["health_healthy"] == rollout.PASS


def test_too_few_cycles_in_the_window_is_insufficient() -> None:
    state, events = history(every(15, 75))  # covered, no gap above 15 min, but 4 < 6 cycles
    report = judge(state, events)
    insufficient_only(report)
    assert report.window.problems == (
        "4 cycle(s) in the window, at least 6 needed (one every 10 min)",
    )


def test_a_stale_newest_cycle_is_insufficient() -> None:
    state, events = history(every(5, 85, 20))
    report = judge(state, events)
    insufficient_only(report)
    assert report.window.problems == (
        "the newest cycle, at 2026-12-03T09:40:00Z (line 14), is 20 min old (at most 15 min)",
    )
    # state.json is as old as the newest cycle: the state gates cannot judge either.
    assert verdicts(report)["health_healthy"] == rollout.INSUFFICIENT
    assert "20 min ago" in evidence(report, "health_healthy")


def test_a_hole_in_the_history_is_insufficient() -> None:
    state, events = history([*every(5, 65, 45), *every(5, 20)])
    report = judge(state, events)
    insufficient_only(report)
    assert report.window.problems == (
        "no cycle between 2026-12-03T09:15:00Z and 2026-12-03T09:40:00Z "
        "(lines 5 and 6: a gap of 25 min, at most 15 min)",
    )


def test_many_holes_and_bad_lines_are_named_up_to_five_and_counted() -> None:
    phase = rollout.PHASES["general-availability"]
    state, events = history(every(20, 24 * 60))  # 72 gaps of 20 minutes
    events += b"x\n" * 7
    report = judge(state, events, phase)
    problems = report.window.problems
    assert sum(p.startswith("runtime-events.jsonl line ") for p in problems) == 5
    assert "runtime-events.jsonl: 2 more malformed line(s)" in problems
    assert sum(p.startswith("no cycle between ") for p in problems) == 5
    assert problems[-1] == "67 more gap(s) over 15 min"


def test_a_malformed_line_in_the_window_is_insufficient_and_named() -> None:
    state, events = history(every(5, 65))
    lines = events.splitlines(keepends=True)
    lines.insert(6, b'{"at": "2026-12-03T09:35:00Z", "state": "heal\n')  # a torn line: line 7
    report = judge(state, b"".join(lines))
    insufficient_only(report)
    [problem] = report.window.problems
    assert problem.startswith("runtime-events.jsonl line 7: not JSON (")


def test_a_malformed_line_before_the_window_is_ignored() -> None:
    state, events = history(every(5, 90))
    lines = events.splitlines(keepends=True)
    lines.insert(1, b"garbage\n")  # between the cycles of 90 and 85 minutes ago
    assert judge(state, b"".join(lines)).verdict == rollout.PASS


def test_a_failure_seen_in_an_insufficient_history_still_fails() -> None:
    state, events = history(every(5, 30), {15: results(redis=REFUSED)})
    report = judge(state, events)
    assert not report.window.sufficient
    assert verdicts(report)["no_case_processing_failed"] == rollout.FAIL
    assert report.verdict == rollout.FAIL


def test_no_state_and_no_events_is_insufficient() -> None:
    report = rollout.evaluate(
        CANARY_1, None, rollout.History(), NOW, state_problem="no state.json in /x"
    )
    assert report.verdict == rollout.INSUFFICIENT
    assert set(verdicts(report).values()) == {rollout.INSUFFICIENT}
    assert evidence(report, "health_healthy") == "no state.json in /x"
    assert report.window.problems == (
        "runtime-events.jsonl: no health cycle recorded up to 2026-12-03T10:00:00Z",
    )


def test_judging_an_earlier_moment_ignores_the_cycles_after_it() -> None:
    state, events = history(every(5, 125), {10: results(redis=REFUSED)})
    earlier = NOW - timedelta(minutes=30)
    report = rollout.evaluate(
        CANARY_1,
        StoredState(**{**state.to_dict(), "last_checked_at": "2026-12-03T09:30:00Z"}),
        rollout.parse_events(events),
        earlier,
    )
    assert report.verdict == rollout.PASS
    assert report.window.ignored_after_now == 6


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        (b"", "empty line"),
        (b"\xff\xfe", "not UTF-8"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"state": "healthy"}', "at: missing"),
        (b'{"at": "2026-12-03T09:00:00"}', "at: not an ISO-8601 time with a zone"),
        (b'{"at": 5}', "at: expected str, got int"),
        (
            b'{"at": "2026-12-03T09:00:00Z", "components": {"redis": [1]}}',
            "components: expected lists of reason codes",
        ),
        (
            b'{"at": "2026-12-03T09:00:00Z", "components": {}, "state": "healthy", '
            b'"reason_codes": "ok"}',
            "reason_codes: expected list, got str",
        ),
        (
            b'{"at": "2026-12-03T09:00:00Z", "components": {}, "state": "healthy", '
            b'"reason_codes": [], "failure_streak": true, "queue_depth": 0}',
            "failure_streak: expected a whole number from 0, got True",
        ),
    ],
)
def test_malformed_lines_say_what_is_wrong(line: bytes, problem: str) -> None:
    _, good = history([5])
    parsed = rollout.parse_events(good + line + b"\n" + good)
    assert [event.line for event in parsed.events] == [1, 3]
    [bad] = parsed.malformed
    assert bad.line == 2 and bad.problem.startswith(problem), bad.problem


# --- end to end: real state files, the operation, the task ------------------------------

# Where nothing listens: the fake probes below answer instead.
TARGETS = {
    "redis": RedisTarget(name="redis", host="127.0.0.1", port=9, password="unused"),
    "postgresql": PostgresTarget(
        name="postgresql", host="127.0.0.1", port=9, dbname="m", user="m", password="unused"
    ),
}
Probe = Callable[[object, float], ProbeResult]


def answers(*sequence: ProbeResult) -> Probe:
    """A probe that returns ``sequence`` one call after another (the last one repeats)."""
    remaining = list(sequence)
    return lambda target, timeout_s: remaining.pop(0) if len(remaining) > 1 else remaining[0]


PLAIN = ProbeResult(State.HEALTHY, 1.0, ("ok",), {})
DOWN = ProbeResult(State.FAILING, 1.0, ("connect_refused",), {"error": "connection refused"})


def cycles(
    state_dir: Path, minutes: Iterable[int], redis: Callable[[], Probe] | None = None
) -> None:
    """Real health cycles at those minutes before NOW (healthy probes unless ``redis`` says)."""
    for minute in minutes:
        probes = {"redis": (redis or (lambda: answers(PLAIN)))(), "postgresql": answers(PLAIN)}
        run_cycle(
            TARGETS,
            state_dir,
            timeout_s=1.0,
            retries=1,
            now=NOW - timedelta(minutes=minute),
            probes=probes,
            retry_delay_s=0,
        )


@pytest.fixture
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The local inventory's state directory, moved into tmp_path."""
    directory = tmp_path / "state"
    monkeypatch.setenv("MEMOPS_STATE_DIR", str(directory))
    return directory


def gate(
    capsys: pytest.CaptureFixture[str], phase: str = "canary-1", now: datetime = NOW
) -> tuple[int, dict[str, Any], str]:
    return call(GATE, Path("local"), capsys, phase=phase, now=now.isoformat())


def test_operation_passes_on_real_healthy_cycles(
    state_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cycles(state_dir, every(5, 65))
    code, document, err = gate(capsys)
    assert code == EXIT_OK, document
    assert document["verdict"] == "pass" and document["ok"] is True
    assert [g["verdict"] for g in document["gates"]] == ["pass"] * 6
    assert document["history"]["cycles"] == 12 and document["history"]["problems"] == []
    assert err == ""
    audit = json.loads((state_dir / "audit.jsonl").read_text().splitlines()[-1])
    assert (audit["action"], audit["result"]) == ("rollout.gate", "pass")


def test_operation_fails_naming_the_gate_after_one_failed_cycle(
    state_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cycles(state_dir, every(5, 65, 5))
    cycles(state_dir, [0], redis=lambda: answers(DOWN))
    code, document, _ = gate(capsys)
    assert code == EXIT_FAILED
    assert "no_case_processing_failed" in document["failed"]
    [failed] = [g for g in document["gates"] if g["name"] == "no_case_processing_failed"]
    assert failed["evidence"].endswith("(runtime-events.jsonl line 14)")
    # The human table names it too.
    capsys.readouterr()
    raw = {"phase": "canary-1", "now": NOW.isoformat()}
    assert run_operation(GATE, raw, inventory_spec="local") == EXIT_FAILED
    out = capsys.readouterr().out
    assert out.startswith("rollout gate canary-1: FAIL (window 60 min, 2026-12-03T09:00:00Z to ")
    assert any(line.startswith("no_case_processing_failed  fail") for line in out.splitlines())


def test_operation_fails_when_real_retry_counts_grow(
    state_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cycles(state_dir, every(5, 65, 15))
    # Redis fails once, then answers: a retried but healthy cycle, four times over.
    cycles(state_dir, every(5, 10), redis=lambda: answers(DOWN, PLAIN))
    state = json.loads((state_dir / STATE_FILE).read_text())
    assert (state["health_state"], state["failure_streak"]) == ("healthy", 0)
    code, document, _ = gate(capsys)
    assert code == EXIT_FAILED
    assert document["failed"] == ["reason_codes_flat"]


def test_operation_is_insufficient_on_a_history_shorter_than_the_window(
    state_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cycles(state_dir, every(5, 30))
    code, document, _ = gate(capsys)
    assert code == EXIT_INSUFFICIENT == 3
    assert document["verdict"] == "insufficient" and document["failed"] == []
    assert document["history"]["problems"][0].startswith("the history starts at ")


def test_operation_on_a_state_directory_without_history(
    state_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, document, _ = gate(capsys)
    assert code == EXIT_INSUFFICIENT
    assert document["gates"][0]["evidence"].startswith("no state.json in ")


def test_operation_on_an_unreadable_state_file(
    state_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cycles(state_dir, every(5, 65))
    (state_dir / STATE_FILE).write_text("{not json")
    code, document, _ = gate(capsys)
    assert code == EXIT_INSUFFICIENT
    assert "unreadable" in document["gates"][0]["evidence"]


def test_operation_on_an_unreadable_event_file(
    state_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cycles(state_dir, every(5, 65))
    (state_dir / EVENTS_FILE).unlink()
    (state_dir / EVENTS_FILE).mkdir()  # reading it fails even as root
    code, document, _ = gate(capsys)
    assert code == EXIT_INSUFFICIENT
    assert document["history"]["problems"][0] == "runtime-events.jsonl: unreadable (Is a directory)"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"phase": "canary-9"}, "--phase: unknown 'canary-9'; known: canary-1, canary-2, "),
        ({"phase": None}, "--phase: is required; known: canary-1, "),
        ({"phase": "canary-1", "now": "yesterday"}, "--now: expected an ISO-8601 time"),
        ({"phase": "canary-1", "now": "2026-12-03T10:00:00"}, "--now: expected an ISO-8601"),
    ],
)
def test_bad_options_are_refused(
    state_dir: Path, capsys: pytest.CaptureFixture[str], raw: dict[str, Any], message: str
) -> None:
    code, document, err = call(GATE, Path("local"), capsys, **raw)
    assert code == EXIT_BAD_INPUT
    assert message in document["error"] and err.count("\n") == 0 and message in err


INVOKE = str(Path(sys.executable).with_name("invoke"))


def invoke(state_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [INVOKE, "rollout.gate", "--inventory", "local", *args],
        cwd=paths.PROJECT_DIR,
        env={**os.environ, "MEMOPS_STATE_DIR": str(state_dir)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_task_through_invoke(state_dir: Path) -> None:
    cycles(state_dir, every(5, 65))
    passed = invoke(state_dir, "--phase", "canary-1", "--now", NOW.isoformat(), "--json")
    assert passed.returncode == 0, passed.stderr
    assert json.loads(passed.stdout)["verdict"] == "pass"

    later = (NOW + timedelta(minutes=30)).isoformat()
    stale = invoke(state_dir, "--phase", "canary-2", "--now", later, "--json")
    assert stale.returncode == 3, stale.stderr
    assert json.loads(stale.stdout)["verdict"] == "insufficient"

    cycles(state_dir, [-5], redis=lambda: answers(DOWN))
    failed = invoke(state_dir, "--phase=canary-1", f"--now={later}")
    assert failed.returncode == 1, failed.stderr
    assert "no_case_processing_failed  fail" in failed.stdout

    unknown = invoke(state_dir, "--phase", "beta")
    assert unknown.returncode == 2
    assert unknown.stderr.count("\n") == 1 and "--phase: unknown 'beta'" in unknown.stderr
    assert "Traceback" not in unknown.stderr
    assert len((state_dir / EVENTS_FILE).read_text().splitlines()) == 15


# --- the runbook -----------------------------------------------------------------------

RUNBOOK = paths.PROJECT_DIR / "docs" / "runbooks" / "rollout.md"


def runbook_commands() -> list[list[str]]:
    """Every step's command of the runbook, split as a shell would (tests/runbook_steps.py)."""
    sections = parse(RUNBOOK.read_text(), heading="## ")
    return [shlex.split(step.command) for section in sections for step in section.steps]


def test_every_runbook_step_is_a_task_with_options_it_has() -> None:
    tasks = root_collection()
    commands = runbook_commands()
    assert len(commands) >= 10
    for argv in commands:
        assert argv[0] == "invoke", argv
        task = tasks[argv[1]]  # KeyError: no such task
        # From the signature: Task.get_arguments() would consume the tasks' help texts.
        parameters = list(inspect.signature(task.body).parameters)[1:]
        flags = {"--" + name.replace("_", "-") for name in parameters}
        given = {word.split("=")[0] for word in argv[2:] if word.startswith("--")}
        assert given <= flags, (argv, given - flags)
        phase = [word for word in argv if word in rollout.PHASES or word.startswith("canary")]
        assert all(word in rollout.PHASES for word in phase), argv


def runbook_outputs() -> dict[str, list[str]]:
    """The text blocks marked `<!-- gate-output: KIND -->`, unindented."""
    blocks = re.findall(
        r"<!-- gate-output: (\w+) -->\n\s*```text\n(.*?)\n\s*```", RUNBOOK.read_text(), re.S
    )
    return {kind: [line.strip() for line in text.splitlines()] for kind, text in blocks}


def test_the_runbooks_gate_outputs_are_what_the_gate_prints(
    state_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    scenarios: dict[str, Callable[[Path], None]] = {
        "pass": lambda d: cycles(d, every(5, 65)),
        "insufficient": lambda d: cycles(d, every(5, 30)),
        "fail": lambda d: (
            cycles(d, every(5, 65, 5)),
            cycles(d, [0], redis=lambda: answers(DOWN)),
        ),
    }
    shown = runbook_outputs()
    assert set(shown) == set(scenarios)
    for kind, write in scenarios.items():
        directory = state_dir / kind
        write(directory)
        monkeypatch.setenv("MEMOPS_STATE_DIR", str(directory))
        capsys.readouterr()
        run_operation(GATE, {"phase": "canary-1", "now": NOW.isoformat()}, inventory_spec="local")
        printed = [line.strip() for line in capsys.readouterr().out.splitlines()]
        assert printed == shown[kind], kind
