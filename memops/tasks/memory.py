"""`invoke memory.*`: supersede-lifecycle procedures on episodic memory (PostgreSQL)."""

from __future__ import annotations

from invoke import Context

from memops.ops.memory import ANONYMIZE, CHAIN, REJUDGE
from memops.tasks.common import memops_task


@memops_task(REJUDGE)
def rejudge(
    c: Context,
    namespace=None,
    row=None,
    inventory=None,
    dry_run=False,
    yes=False,
    json=False,
    tenant=None,
):
    """Put live facts back into the judge queue (judge_at = NULL): one row or a namespace."""


@memops_task(CHAIN)
def chain(c: Context, row, namespace=None, max_depth=None, inventory=None, json=False, tenant=None):
    """Walk a supersede chain backwards from a row: what it replaced, newest first."""


@memops_task(ANONYMIZE)
def anonymize(
    c: Context,
    namespace=None,
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
    tenant=None,
):
    """Redact rows past retention (soft-deleted, superseded); a dry run unless --apply."""
