"""`invoke validate.*`: prove the memory stack answers what it was told."""

from __future__ import annotations

from invoke import Context

from memops.ops.validate import RECALL
from memops.tasks.common import memops_task


@memops_task(RECALL)
def recall(
    c: Context,
    tier=None,
    threshold=None,
    keep=False,
    skip_write=False,
    inventory=None,
    json=False,
):
    """Write scripted facts into every tier, ask for them back, report the success rate."""
