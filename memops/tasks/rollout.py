"""`invoke rollout.*`: rollout gates judged from the health history."""

from __future__ import annotations

from invoke import Context

from memops.ops.rollout import GATE
from memops.tasks.common import memops_task, run


@memops_task(
    help={
        "phase": "canary-1, canary-2, canary-3 or general-availability",
        "now": "judge at this ISO-8601 time with a zone (default: now)",
    }
)
def gate(c: Context, phase=None, now=None, inventory=None, json=False):
    """Judge a rollout phase's gates: exit 0 all pass, 1 one fails, 3 history insufficient."""
    run(c, GATE, locals())
