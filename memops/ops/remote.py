"""Backup operations run on the backup host, where the data lives, through their playbook.

With ``backup_host`` set in the inventory (or ``MEMOPS_BACKUP_HOST`` in the
environment), ``invoke backup.*`` does not reach the stores over the network:
it runs ``playbooks/backup.yml`` (``restore.yml`` for a restore) against that
host, which runs the same operation there (``python -m memops operation``,
the options on stdin) and hands its Outcome back through ``set_stats``. The
controller holds the stack lock while it does; the host's run acts under it
(``memops.locking``). Unset, the operation runs in this process.

A destructive operation asks here, before the playbook starts: the host's run
has no terminal, so it gets ``--yes`` once the person at this one said yes.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from memops.backup.settings import inventory_vars
from memops.deploy.inventory import Inventory
from memops.deploy.playbook import PlaybookOptions, run_playbook
from memops.exitcodes import EXIT_FAILED
from memops.ops.confirm import NotConfirmed, confirm
from memops.ops.runner import Context, Operation, Outcome

HOST_ENV = "MEMOPS_BACKUP_HOST"
HERE_ENV = "MEMOPS_RUN_HERE"  # set by the playbook: the host's run never dispatches again


def operation_host(inventory: Inventory) -> str | None:
    """The host backup operations run on, or None: here."""
    if os.environ.get(HERE_ENV):
        return None
    host = os.environ.get(HOST_ENV) or inventory_vars(inventory).get("backup_host") or ""
    return str(host) or None


def run_on_host(
    operation: Operation, context: Context, raw: Mapping[str, Any], host: str
) -> Outcome:
    inventory = context.require_inventory()
    options = dict(raw)
    if "yes" in operation.options and not options.get("yes") and not options.get("dry_run"):
        given = ", ".join(f"{k}={v}" for k, v in sorted(options.items()) if v not in (None, ()))
        try:
            confirm(f"{operation.name} ({given}) on {host}", yes=False)
        except NotConfirmed as exc:
            return Outcome.refused(str(exc))
        options["yes"] = True
    result = run_playbook(
        operation.playbook,
        inventory,
        PlaybookOptions(
            extra_vars={
                "memops_operation_host": host,
                "memops_operation": operation.name,
                "memops_operation_options": options,
            }
        ),
        echo=context.echo,
    )
    reported = result.custom.get("_run", {}).get("memops_outcome")
    if not isinstance(reported, dict) or "exit_code" not in reported:
        message = result.error_line or (
            f"backup host {host!r}: playbooks/{operation.playbook}.yml ran nothing there "
            f"(is it a host of inventory {inventory.name}?); see {result.log_file}"
        )
        return Outcome(
            EXIT_FAILED,
            {"ok": False, "error": message, "ran_on": host},
            error=message,
            result="failed",
        )
    outcome = Outcome.from_dict(reported)
    where = f"ran on {host} through playbooks/{operation.playbook}.yml"
    return Outcome(
        outcome.exit_code,
        {**outcome.document, "ran_on": host},
        lines=(*outcome.lines, where) if outcome.lines else (),
        error=outcome.error,
        notes=outcome.notes,
        result=outcome.result,
        audit={**outcome.audit, "ran_on": host, "log": str(result.log_file)},
    )
