"""`invoke rebuild.*`: the memory rebuild runbook, one namespace at a time.

validate, soft, hard and reindex are here; quarantine and release live in quarantine.py
and join the collection through the import below.
"""

from __future__ import annotations

from invoke import Context

from memops.ops.rebuild import HARD, REINDEX, SOFT, VALIDATE
from memops.tasks.common import memops_task
from memops.tasks.quarantine import quarantine, release

__all__ = ["hard", "quarantine", "reindex", "release", "soft", "validate"]


@memops_task(VALIDATE)
def validate(
    c: Context,
    namespace,
    tier=None,
    benchmark=False,
    min_hit_rate=None,
    inventory=None,
    json=False,
):
    """Check every entry of a namespace: good / corrupt / undecryptable / orphaned per tier."""


@memops_task(SOFT)
def soft(
    c: Context,
    namespace,
    tier=None,
    include_undecryptable=False,
    dry_run=False,
    yes=False,
    inventory=None,
    json=False,
):
    """Back the namespace up, then remove only the entries that fail validation."""


@memops_task(HARD)
def hard(
    c: Context,
    namespace,
    from_backup=None,
    tier=None,
    dry_run=False,
    yes=False,
    inventory=None,
    json=False,
):
    """Back the namespace up, clear it, restore it from a set, validate it and probe."""


@memops_task(REINDEX)
def reindex(
    c: Context, namespace, keep_orphans=False, dry_run=False, yes=False, inventory=None, json=False
):
    """Rebuild the namespace's Qdrant points from the embeddings kept in memory_items."""
