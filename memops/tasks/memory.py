"""`invoke memory.*`: supersede-lifecycle procedures on episodic memory (PostgreSQL)."""

from __future__ import annotations

from invoke import Context

from memops.ops.memory import CHAIN, REJUDGE
from memops.tasks.common import memops_task, run

_HELP = {
    "tenant": "the tenant (taken literally: quotes, globs and SQL in it are just characters)",
    "row": "the memory item id (a UUID)",
    "max_depth": "walk at most this many rows back (default 100); a longer chain is truncated",
}


@memops_task(
    help=_HELP
    | {
        "row": "only this memory item id (a UUID; default: every live fact of the tenant)",
    }
)
def rejudge(
    c: Context, tenant=None, row=None, inventory=None, dry_run=False, yes=False, json=False
):
    """Put live facts back into the judge queue (judge_at = NULL): one row or a whole tenant."""
    run(
        c,
        REJUDGE,
        inventory=inventory,
        json=json,
        tenant=tenant,
        row=row,
        dry_run=dry_run,
        yes=yes,
    )


@memops_task(help=_HELP | {"tenant": "only look in this tenant (default: the row's own)"})
def chain(c: Context, row, tenant=None, max_depth=None, inventory=None, json=False):
    """Walk a supersede chain backwards from a row: what it replaced, newest first."""
    run(c, CHAIN, inventory=inventory, json=json, row=row, tenant=tenant, max_depth=max_depth)
