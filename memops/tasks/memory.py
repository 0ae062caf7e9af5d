"""`invoke memory.*`: supersede-lifecycle procedures on episodic memory (PostgreSQL)."""

from __future__ import annotations

from invoke import Context

from memops.ops.memory import ANONYMIZE, CHAIN, REJUDGE
from memops.tasks.common import memops_task, run

_HELP = {
    "tenant": "the tenant (taken literally: quotes, globs and SQL in it are just characters)",
    "row": "the memory item id (a UUID)",
    "max_depth": "walk at most this many rows back (default 100); a longer chain is truncated",
    "apply": "anonymize (without it: a dry run that only counts the rows due)",
    "allow_mass": "go ahead for tenants over the safety floor (--max-share of their rows due)",
    "soft_ttl_days": "soft-deleted rows are due this many days after deleted_at "
    "(default: memory_anonymize_soft_ttl_days in group_vars, else 30)",
    "supersede_ttl_days": "superseded rows are due this many days after they were superseded "
    "(default: memory_anonymize_supersede_ttl_days, else 90)",
    "max_share": "safety floor: a tenant with more than this share of its rows due is left "
    "alone without --allow-mass (default: memory_anonymize_max_share, else 0.5)",
    "mass_min_rows": "fewer due rows than this never count as a mass run "
    "(default: memory_anonymize_mass_min_rows, else 1: every tenant is held to the share)",
    "batch_size": "rows per transaction, each with its audit row "
    "(default: memory_anonymize_batch_size, else 1000)",
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
    run(c, REJUDGE, locals())


@memops_task(help=_HELP | {"tenant": "only look in this tenant (default: the row's own)"})
def chain(c: Context, row, tenant=None, max_depth=None, inventory=None, json=False):
    """Walk a supersede chain backwards from a row: what it replaced, newest first."""
    run(c, CHAIN, locals())


@memops_task(help=_HELP | {"tenant": "only this tenant (default: every tenant)"})
def anonymize(
    c: Context,
    tenant=None,
    apply=False,
    yes=False,
    allow_mass=False,
    soft_ttl_days=None,
    supersede_ttl_days=None,
    max_share=None,
    mass_min_rows=None,
    batch_size=None,
    inventory=None,
    json=False,
):
    """Redact rows past retention (soft-deleted, superseded); a dry run unless --apply."""
    run(c, ANONYMIZE, locals())
