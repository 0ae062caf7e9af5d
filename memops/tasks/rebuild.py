"""`invoke rebuild.*`: the memory rebuild runbook, one namespace at a time.

validate, soft and hard are here; quarantine and release live in rebuild_quarantine
and join the collection through the import below.
"""

from __future__ import annotations

from invoke import Context

from memops.ops.rebuild import HARD, REINDEX, SOFT, VALIDATE
from memops.tasks.common import memops_task, run
from memops.tasks.quarantine import quarantine, release

__all__ = ["hard", "quarantine", "reindex", "release", "soft", "validate"]

_HELP = {
    "namespace": "the tenant (taken literally: quotes, globs and SQL in it are just characters)",
    "tier": "only these tiers, comma-separated: redis, postgresql, qdrant (default: all deployed)",
}


@memops_task(
    help=_HELP
    | {
        "benchmark": "also run the scripted read workload and report its hit rate",
        "min_hit_rate": "with --benchmark, exit 1 under this hit rate (default 0.8)",
    }
)
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
    run(c, VALIDATE, locals())


@memops_task(
    help=_HELP
    | {
        "include_undecryptable": "also remove values sealed with a key the key ring lacks",
        "dry_run": "print exactly what would be removed, change nothing",
        "yes": "confirm without a prompt (needed when not interactive)",
    }
)
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
    run(c, SOFT, locals())


@memops_task(
    help=_HELP
    | {
        "from_backup": "the backup set to restore the namespace from (see backup.list), or latest",
        "dry_run": "print what would be replaced, with counts; change nothing",
        "yes": "confirm without a prompt (needed when not interactive)",
    }
)
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
    run(c, HARD, locals())


@memops_task(
    help={
        "namespace": _HELP["namespace"],
        "keep_orphans": "keep the tenant's points that no live indexed row wants (default: delete)",
        "dry_run": "print the points to create, update and delete; change nothing",
        "yes": "confirm without a prompt (needed when not interactive)",
    }
)
def reindex(
    c: Context, namespace, keep_orphans=False, dry_run=False, yes=False, inventory=None, json=False
):
    """Rebuild the namespace's Qdrant points from the embeddings kept in memory_items."""
    run(c, REINDEX, locals())
