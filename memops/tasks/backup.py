"""`invoke backup.*`: take, list, verify, restore and prune backup sets of the stack."""

from __future__ import annotations

from invoke import Context

from memops.ops.backup import CREATE, LIST, PRUNE, RESTORE, VERIFY
from memops.ops.drill import DRILL
from memops.tasks.common import memops_task


@memops_task(CREATE, iterable=["namespace"])
def create(c: Context, inventory=None, tier=None, namespace=None, target=None, json=False):
    """Back up every tier (or the tiers and namespaces given) into one verified set."""


@memops_task(LIST, name="list")
def list_(c: Context, inventory=None, target=None, json=False):
    """List the complete backup sets, oldest first."""


@memops_task(VERIFY)
def verify(c: Context, set_id, inventory=None, target=None, allow_unencrypted=False, json=False):
    """Check every file of a set against its manifest, and each tier's own checker."""


@memops_task(RESTORE, iterable=["namespace"])
def restore(
    c: Context,
    set_id,
    inventory=None,
    tier=None,
    namespace=None,
    target=None,
    dry_run=False,
    yes=False,
    drop_old=False,
    allow_unencrypted=False,
    json=False,
):
    """Verify a set, then restore it (all of it, some tiers, or some namespaces)."""


@memops_task(PRUNE)
def prune(c: Context, inventory=None, target=None, dry_run=False, yes=False, json=False):
    """Remove the sets the retention policy does not keep (never the newest verified whole one)."""


@memops_task(DRILL)
def drill(c: Context, inventory=None, set_id=None, target=None, json=False):
    """Restore a set into scratch copies, check it and its sealed values, measure RTO and RPO."""
