"""`invoke backup.*`: take, list, verify, restore and prune backup sets of the stack."""

from __future__ import annotations

from invoke import Context

from memops.ops.backup import CREATE, LIST, PRUNE, RESTORE, VERIFY
from memops.ops.drill import DRILL
from memops.tasks.common import memops_task, run

_HELP = {
    "tier": "only these tiers, comma-separated: redis, postgresql, qdrant (default: all deployed)",
    "namespace": "only this tenant (repeat the option for more)",
    "target": "local or s3 (default: the inventory's backup_target, else local)",
    "set_id": "the set, as backup.list shows it, or latest / oldest (the newest / oldest set)",
    "drop_old": "PostgreSQL whole restore: drop the replaced database (default: keep it as "
    "<db>_pre_<set>_<random> until the next verified backup)",
    "allow_unencrypted": "with a backup key configured, trust a set that is not encrypted and "
    "authenticated with it (refused by default: anyone who can write to the store can make one)",
}


@memops_task(help=_HELP, iterable=["namespace"])
def create(c: Context, inventory=None, tier=None, namespace=None, target=None, json=False):
    """Back up every tier (or the tiers and namespaces given) into one verified set."""
    run(c, CREATE, locals())


@memops_task(help=_HELP, name="list")
def list_(c: Context, inventory=None, target=None, json=False):
    """List the complete backup sets, oldest first."""
    run(c, LIST, locals())


@memops_task(help=_HELP)
def verify(c: Context, set_id, inventory=None, target=None, allow_unencrypted=False, json=False):
    """Check every file of a set against its manifest, and each tier's own checker."""
    run(c, VERIFY, locals())


@memops_task(help=_HELP, iterable=["namespace"])
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
    run(c, RESTORE, locals())


@memops_task(help=_HELP)
def prune(c: Context, inventory=None, target=None, dry_run=False, yes=False, json=False):
    """Remove the sets the retention policy does not keep (never the newest verified whole one)."""
    run(c, PRUNE, locals())


@memops_task(help=_HELP | {"set_id": "the set to drill (default: the newest whole set)"})
def drill(c: Context, inventory=None, set_id=None, target=None, json=False):
    """Restore a set into scratch copies, check it and its sealed values, measure RTO and RPO."""
    run(c, DRILL, locals())
