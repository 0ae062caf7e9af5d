"""`invoke rebuild.quarantine` / `rebuild.release` (added to the rebuild collection)."""

from __future__ import annotations

from invoke import Context

from memops.ops.quarantine import QUARANTINE, RELEASE
from memops.tasks.common import memops_task, run

_HELP = {
    "namespace": "the tenant (taken literally: quotes, globs and SQL in it are just characters)",
    "tier": "only these tiers (comma-separated: redis,postgresql,qdrant; default: all three)",
}


@memops_task(help=_HELP)
def quarantine(
    c: Context, namespace, tier=None, inventory=None, dry_run=False, yes=False, json=False
):
    """Cut the application's credentials off a namespace in every tier; no data is touched."""
    run(c, QUARANTINE, locals())


@memops_task(help=_HELP)
def release(c: Context, namespace, tier=None, inventory=None, dry_run=False, yes=False, json=False):
    """Give the application its access to a quarantined namespace back, exactly as before."""
    run(c, RELEASE, locals())
