"""docs/runbooks/rollout.md, every step run as typed, on the deployed test stack.

The gates judge hours of health history; the test cannot wait for them, so what
the page says happened before a section is written into the state directory the
way `invoke health` writes it (``evaluate_cycle``, ``HealthSnapshot.event``):
a day of healthy cycles every 5 minutes before the procedure; a real failed cycle
(Redis stopped, `invoke health` as the schedule runs it) before "When a gate
fails"; 30 minutes of cycles before "When the history is insufficient", then a
whole window of them before its last gate; a whole window again before the
rollback's last gate. Everything else is real: health, backup, deploy, the gate,
a whole restore from the set the procedure took. The state files are put back
afterwards.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from integration_helpers import REDIS_PIDFILE, TEST_INVENTORY, DeployedStack, invoke, pidfile_daemon
from runbook_steps import check_output, parse, run_invoke

from memops.health.cycle import evaluate_cycle
from memops.health.state import EVENTS_FILE, STATE_FILE, StoredState, save_state
from memops.paths import PROJECT_DIR
from memops.probes.result import ProbeResult, State

pytestmark = pytest.mark.integration

RUNBOOK = PROJECT_DIR / "docs" / "runbooks" / "rollout.md"
HEALTHY = ProbeResult(State.HEALTHY, 1.0, ("ok",), {})


def healthy_history(stack: DeployedStack, minutes: int) -> None:
    """Healthy cycles every 5 minutes over the last ``minutes``, the newest 1 minute ago."""
    now = datetime.now(UTC)
    names = sorted(stack.targets.components)
    state, lines = StoredState(), []
    for ago in range(minutes, 0, -5):
        snapshot, state = evaluate_cycle(
            dict.fromkeys(names, HEALTHY), state, now - timedelta(minutes=ago, seconds=-59)
        )
        lines.append(json.dumps(snapshot.event(), sort_keys=True) + "\n")
    (stack.state_dir / EVENTS_FILE).write_text("".join(lines))
    save_state(stack.state_dir, state)


def a_day_of_healthy_cycles(stack: DeployedStack) -> None:
    healthy_history(stack, 24 * 60 + 10)


def redis_fails_one_cycle(stack: DeployedStack) -> None:
    pidfile_daemon("stop", REDIS_PIDFILE)
    assert invoke("health", "--inventory", TEST_INVENTORY).returncode == 1  # the schedule's


def redis_back_and_thirty_minutes_of_cycles(stack: DeployedStack) -> None:
    assert invoke("deploy", "--tags", "redis", "--inventory", TEST_INVENTORY).returncode == 0
    healthy_history(stack, 30)


def a_whole_window_of_cycles(stack: DeployedStack) -> None:
    healthy_history(stack, 65)


# What the page says happened before a step: (section, its n-th step) -> (command, event).
BEFORE: dict[tuple[str, int], tuple[str, Callable[[DeployedStack], None]]] = {
    ("Procedure", 0): ("invoke health", a_day_of_healthy_cycles),
    ("When a gate fails (exit 1)", 0): (
        "invoke rollout.gate --phase canary-1",
        redis_fails_one_cycle,
    ),
    ("When the history is insufficient (exit 3)", 0): (
        "invoke rollout.gate --phase canary-1",
        redis_back_and_thirty_minutes_of_cycles,
    ),
    ("When the history is insufficient (exit 3)", 2): (
        "invoke rollout.gate --phase canary-1",
        a_whole_window_of_cycles,
    ),
    ("Rollback", 4): ("invoke rollout.gate --phase canary-1", a_whole_window_of_cycles),
}


@pytest.fixture
def kept_state(deployed_stack: DeployedStack) -> Iterator[None]:
    saved = {
        name: (deployed_stack.state_dir / name).read_bytes()
        for name in (STATE_FILE, EVENTS_FILE)
        if (deployed_stack.state_dir / name).exists()
    }
    try:
        yield
    finally:
        if invoke("health", "--inventory", TEST_INVENTORY).returncode != 0:
            invoke("deploy", "--inventory", TEST_INVENTORY)
        for name, data in saved.items():
            (deployed_stack.state_dir / name).write_bytes(data)


def test_every_step_prints_what_the_runbook_says(
    deployed_stack: DeployedStack, kept_state: None
) -> None:
    sections = parse(RUNBOOK.read_text(), heading="## ")
    assert [s.title for s in sections if s.steps] == [
        "Procedure",
        "When a gate fails (exit 1)",
        "When the history is insufficient (exit 3)",
        "Rollback",
    ]
    values: dict[str, str] = {}
    ran = 0
    for section in sections:
        for position, step in enumerate(section.steps):
            if hook := BEFORE.get((section.title, position)):
                assert step.command == hook[0], (section.title, position, step.command)
                hook[1](deployed_stack)
            lines = run_invoke(step, values, Path(TEST_INVENTORY), deployed_stack.state_dir)
            check_output(step, lines, values)  # <set-id>: the set the procedure took
            ran += 1
    assert ran == 18 and "set-id" in values
