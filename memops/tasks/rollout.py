"""`invoke rollout.*`: rollout gates judged from the health history."""

from __future__ import annotations

from invoke import Context

from memops.ops.rollout import GATE
from memops.tasks.common import memops_task


@memops_task(GATE)
def gate(c: Context, phase=None, now=None, inventory=None, json=False):
    """Judge a rollout phase's gates: exit 0 all pass, 1 one fails, 3 history insufficient."""
