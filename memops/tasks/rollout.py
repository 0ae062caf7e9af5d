"""`invoke rollout.*`: rollout gates judged from the health history."""

from __future__ import annotations

from memops.ops.rollout import GATE
from memops.tasks.common import operation_task

gate = operation_task(
    GATE, "Judge a rollout phase's gates: exit 0 all pass, 1 one fails, 3 history insufficient."
)
