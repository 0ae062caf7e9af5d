"""`invoke validate.*`: prove the memory stack answers what it was told."""

from __future__ import annotations

from memops.ops.validate import RECALL
from memops.tasks.common import operation_task

recall = operation_task(
    RECALL, "Write scripted facts into every tier, ask for them back, report the success rate."
)
