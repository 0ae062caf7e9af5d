"""`invoke keys.*`: the key ring of encrypted memory values and its rotation."""

from __future__ import annotations

from invoke import Context

from memops.ops.keys import INIT, RETIRE, ROTATE, STATUS
from memops.tasks.common import memops_task


@memops_task(INIT)
def init(c: Context, vault=False, inventory=None, json=False):
    """Create the key ring (one random key, mode 0600) when there is none; never replace one."""


@memops_task(STATUS)
def status(c: Context, batch=None, inventory=None, json=False):
    """The ring's key ids, the active one, how many Redis values each seals, the last rotation."""


@memops_task(ROTATE)
def rotate(
    c: Context, batch=None, no_new_key=False, inventory=None, dry_run=False, yes=False, json=False
):
    """Add a new active key, then re-encrypt every sealed value under it (resumes if stopped)."""


@memops_task(RETIRE)
def retire(
    c: Context,
    key_id,
    batch=None,
    force=False,
    inventory=None,
    dry_run=False,
    yes=False,
    json=False,
):
    """Remove an old key from the ring; refused while a value or a retained backup set uses it."""
