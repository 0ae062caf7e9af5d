"""`invoke memory.*`: supersede-lifecycle procedures on episodic memory (PostgreSQL)."""

from __future__ import annotations

from invoke import Context

from memops.ops.memory import ANONYMIZE, CHAIN, REJUDGE
from memops.tasks.common import memops_task


@memops_task(REJUDGE)
def rejudge(
    c: Context, tenant=None, row=None, inventory=None, dry_run=False, yes=False, json=False
):
    """Put live facts back into the judge queue (judge_at = NULL): one row or a whole tenant."""


@memops_task(CHAIN)
def chain(c: Context, row, tenant=None, max_depth=None, inventory=None, json=False):
    """Walk a supersede chain backwards from a row: what it replaced, newest first."""


@memops_task(ANONYMIZE)
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
