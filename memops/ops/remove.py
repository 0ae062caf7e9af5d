"""`invoke remove`: the end of a stack's life (playbooks/remove.yml).

The playbook removes the backup schedule, then stops and disables every service the deploy
started (the monitoring first, then the tiers), removes their units, config files and the
binaries memops unpacked, and last the controller's targets.json, so that `invoke health`
finds nothing deployed. Each role reports what it stops, removes, purges and keeps (the
set_stats list ``memops_remove_report``); this module turns that report into the plan it
prints, in the dry run (the playbook in check mode) and the real run alike.

Like every destructive task it needs ``--yes``, or a person at a terminal who saw the plan
and said yes; refused, nothing is touched (exit 2). The data directories and the backup sets
stay unless ``--purge-data``, which deletes what cannot be put back. Debian packages, users
and the state directory's secrets stay (docs/remove.md).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from memops.backup.artifacts import BackupError
from memops.backup.settings import BackupSettings
from memops.backup.store import BackupStore
from memops.deploy.inventory import Inventory
from memops.deploy.playbook import PlaybookOptions, PlaybookResult, run_playbook
from memops.exitcodes import EXIT_FAILED, EXIT_OK
from memops.ops import options
from memops.ops.confirm import can_ask, confirm
from memops.ops.remote import operation_host
from memops.ops.runner import Context, Operation, Outcome

PLAYBOOK = "remove"
REPORT = "memops_remove_report"  # the set_stats list every role's tasks_from: remove adds to
PURGE_VAR = "memops_remove_data"  # the playbook's switch for the data paths
# The report's lists, and the word a plan line gives each.
ACTIONS = {"stopped": "stop", "removed": "remove", "purged": "delete", "kept": "keep"}


@dataclass(frozen=True)
class Plan:
    """What a remove stops, removes, deletes and keeps, and the backup sets it deletes."""

    report: tuple[Mapping[str, Any], ...]  # one entry per host and component
    backup_store: str = ""  # the store's description when --purge-data deletes its sets
    backup_sets: tuple[str, ...] = ()

    @classmethod
    def of(cls, result: PlaybookResult, store: BackupStore | None, sets: Sequence[str]) -> Plan:
        report = result.custom.get("_run", {}).get(REPORT) or []
        entries = tuple(entry for entry in report if isinstance(entry, Mapping))
        return cls(entries, store.description if store else "", tuple(sets))

    def items(self, action: str) -> list[dict[str, str]]:
        """Every service or path of one action, with its host and component."""
        key = "service" if action == "stopped" else "path"
        return [
            {"host": str(entry["host"]), "component": str(entry["component"]), key: str(value)}
            for entry in self.report
            for value in entry.get(action) or ()
        ]

    @property
    def databases(self) -> list[dict[str, str]]:
        return [
            {"host": str(entry["host"]), "component": str(entry["component"]), "database": name}
            for entry in self.report
            for name in entry.get("databases") or ()
        ]

    def to_dict(self) -> dict[str, Any]:
        return {
            **{action: self.items(action) for action in ACTIONS},
            "databases": self.databases,
            "backup_store": self.backup_store or None,
            "backup_sets": list(self.backup_sets),
        }

    def lines(self) -> list[str]:
        """One line per service, path, database and backup set, in the order they go."""
        lines = []
        for action, word in ACTIONS.items():
            for item in self.items(action):
                what = item.get("service") or item["path"]
                lines.append(f"  {word:<6} {item['component']:<17} {item['host']}:{what}")
            if action == "purged":
                lines += [
                    f"  {'delete':<6} {d['component']:<17} {d['host']}: database {d['database']}"
                    for d in self.databases
                ]
                lines += [
                    f"  {'delete':<6} {'backup set':<17} {set_id} in {self.backup_store}"
                    for set_id in self.backup_sets
                ]
        return lines

    def summary(self) -> str:
        deleted = len(self.items("purged")) + len(self.databases) + len(self.backup_sets)
        kept = len(self.items("kept"))
        data = f"{deleted} deleted" if deleted else f"{kept} data path(s) kept"
        return (
            f"{len(self.items('stopped'))} service(s) stopped, "
            f"{len(self.items('removed'))} path(s) removed, {data}"
        )


def remove(context: Context, *, purge_data: bool, dry_run: bool, yes: bool) -> Outcome:
    inventory = context.require_inventory()
    question = (
        f"delete the data and backup sets of inventory {inventory.name} for good"
        if purge_data
        else f"stop and remove the stack of inventory {inventory.name} (its data stays)"
    )
    asking = not (dry_run or yes)
    if asking and not can_ask():
        confirm(question, yes=False)  # refused: no terminal to ask, nothing touched
    store, sets, notes = _backup_sets(inventory) if purge_data else (None, [], [])
    if asking:  # a person at a terminal: show the plan, then ask
        preview = _run(inventory, purge_data=purge_data, check=True, echo=False)
        planned = Plan.of(preview, store, sets)
        if not preview.ok:
            return _failed(inventory, preview, planned, dry_run=True, purge_data=purge_data)
        sys.stderr.write("\n".join(["invoke remove would:", *planned.lines()]) + "\n")
        confirm(question, yes=False)
    result = _run(inventory, purge_data=purge_data, check=dry_run, echo=context.echo)
    plan = Plan.of(result, store, sets)
    if not result.ok:
        return _failed(inventory, result, plan, dry_run=dry_run, purge_data=purge_data)
    deleted: list[str] = []
    if not dry_run and store is not None:
        for set_id in sets:
            try:
                store.delete_set(set_id)
            except BackupError as exc:
                error = f"backup set {set_id}: {exc}"
                return _failed(
                    inventory, result, plan, purge_data=True, error=error, deleted=deleted
                )
            deleted.append(set_id)
    document = _document(inventory, result, plan, dry_run=dry_run, purge_data=purge_data)
    if dry_run:
        head = f"dry run of remove on inventory {inventory.name}, nothing changed; it would: "
        head += plan.summary()
    else:
        head = (
            f"remove ok on inventory {inventory.name}: {plan.summary()} in {result.duration_s:.1f}s"
        )
    if not purge_data and plan.items("kept"):
        notes = [*notes, "the data stays: `invoke remove --purge-data` deletes it"]
    return Outcome(
        EXIT_OK,
        document,
        lines=[head, *plan.lines()],
        notes=notes,
        result="dry-run" if dry_run else "ok",
        audit=_audit(result, plan, deleted),
    )


def _run(inventory: Inventory, *, purge_data: bool, check: bool, echo: bool) -> PlaybookResult:
    playbook_options = PlaybookOptions(check=check, extra_vars={PURGE_VAR: purge_data})
    return run_playbook(PLAYBOOK, inventory, playbook_options, echo=echo)


def _backup_sets(inventory: Inventory) -> tuple[BackupStore | None, list[str], list[str]]:
    """The inventory's backup store and every set in it, complete or not; None when the sets
    live on the backup host, which this run does not reach."""
    host = operation_host(inventory)
    if host is not None:
        note = f"the backup sets stay on the backup host {host}: remove them there"
        return None, [], [note]
    store = BackupSettings.of(inventory).store()
    listing = store.list_sets()
    sets = sorted([m.set_id for m in listing.sets] + [s.set_id for s in listing.incomplete])
    return store, sets, []


def _document(
    inventory: Inventory, result: PlaybookResult, plan: Plan, *, dry_run: bool, purge_data: bool
) -> dict[str, Any]:
    return {
        **result.to_dict(),
        **plan.to_dict(),
        "inventory": inventory.name,
        "dry_run": dry_run,
        "purge_data": purge_data,
        "error": result.error_line or None,
    }


def _audit(result: PlaybookResult, plan: Plan, deleted: Sequence[str]) -> dict[str, Any]:
    return {
        "changed": result.changed,
        "error": result.error_line,
        "log": str(result.log_file),
        "purged": [item["path"] for item in plan.items("purged")],
        "databases": [item["database"] for item in plan.databases],
        "backup_sets": list(deleted),
    }


def _failed(
    inventory: Inventory,
    result: PlaybookResult,
    plan: Plan,
    *,
    purge_data: bool,
    dry_run: bool = False,
    error: str = "",
    deleted: Sequence[str] = (),
) -> Outcome:
    """The playbook (or deleting a backup set) failed: what it did so far, and the first error.
    Running the remove again finishes it."""
    message = error or result.error_line
    document = _document(inventory, result, plan, dry_run=dry_run, purge_data=purge_data)
    document.update(ok=False, error=message)
    audit = _audit(result, plan, deleted)
    return Outcome(EXIT_FAILED, document, error=message, audit=audit, result="failed")


REMOVE = Operation.destructive(
    "remove",
    remove,
    purge_data=options.described(
        options.flag(),
        "also delete the data directories, their databases and the backup sets",
    ),
)
