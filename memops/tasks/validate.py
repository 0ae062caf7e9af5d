"""`invoke validate.*`: prove the memory stack answers what it was told."""

from __future__ import annotations

from invoke import Context

from memops.ops.validate import RECALL
from memops.tasks.common import memops_task, run


@memops_task(
    help={
        "tier": "only these tiers, comma-separated: redis, postgresql, qdrant (default: all)",
        "threshold": "exit 1 under this success rate (default 0.95)",
        "keep": "leave the scenario's facts in place (tenant memops-recall-check)",
        "skip_write": "ask only: answer from facts a previous --keep run left",
    }
)
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
    run(c, RECALL, locals())
