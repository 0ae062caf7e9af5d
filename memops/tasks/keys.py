"""`invoke keys.*`: the key ring of encrypted memory values and its rotation."""

from __future__ import annotations

from invoke import Context

from memops.ops.keys import INIT, RETIRE, ROTATE, STATUS
from memops.tasks.common import memops_task, run

_HELP = {
    "batch": "values read and rewritten per SCAN step and Lua call (default 500)",
    "key_id": "the key id to remove, as keys.status prints it (16 hex digits)",
    "vault": "encrypt the new ring file with Ansible Vault (ANSIBLE_VAULT_PASSWORD_FILE)",
    "no_new_key": "move the values under the current active key, without adding a key",
    "force": (
        "retire even though retained backup sets hold values sealed with the key (or cannot "
        "be checked): those sets then restore values no key opens; names them and audits it"
    ),
}


@memops_task(help=_HELP)
def init(c: Context, vault=False, inventory=None, json=False):
    """Create the key ring (one random key, mode 0600) when there is none; never replace one."""
    run(c, INIT, locals())


@memops_task(help=_HELP)
def status(c: Context, batch=None, inventory=None, json=False):
    """The ring's key ids, the active one, how many Redis values each seals, the last rotation."""
    run(c, STATUS, locals())


@memops_task(help=_HELP)
def rotate(
    c: Context, batch=None, no_new_key=False, inventory=None, dry_run=False, yes=False, json=False
):
    """Add a new active key, then re-encrypt every sealed value under it (resumes if stopped)."""
    run(c, ROTATE, locals())


@memops_task(help=_HELP)
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
    run(c, RETIRE, locals())
