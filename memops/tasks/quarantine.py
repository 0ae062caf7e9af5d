"""`invoke rebuild.quarantine` / `rebuild.release` (added to the rebuild collection)."""

from __future__ import annotations

from invoke import Context

from memops.ops.quarantine import QUARANTINE, RELEASE
from memops.tasks.common import memops_task


@memops_task(QUARANTINE)
def quarantine(
    c: Context, namespace, tier=None, inventory=None, dry_run=False, yes=False, json=False
):
    """Cut the application's credentials off a namespace in every tier; no data is touched."""


@memops_task(RELEASE)
def release(c: Context, namespace, tier=None, inventory=None, dry_run=False, yes=False, json=False):
    """Give the application its access to a quarantined namespace back, exactly as before."""
