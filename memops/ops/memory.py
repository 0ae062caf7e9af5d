"""The `memory.*` operations: supersede-lifecycle procedures on episodic memory.

Each finds the deployed PostgreSQL of the inventory, calls one procedure of
``memops.supersede`` and turns its result into an Outcome. A refusal before
anything changed (nothing deployed, unknown row, a row of another tenant, not
confirmed) is exit 2; a database error is exit 1.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import psycopg

from memops import supersede
from memops.audit import actor
from memops.backup.artifacts import BackupError
from memops.backup.engines import tier_target
from memops.clients import postgres_connect
from memops.exitcodes import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK
from memops.inventory import Inventory
from memops.ops import options
from memops.ops.backup import probe_line
from memops.ops.confirm import NotConfirmed, confirm
from memops.ops.health import deployed_targets
from memops.ops.runner import Context, Operation, Outcome
from memops.targets import Targets, TargetsError

MAX_CHAIN_DEPTH = 10_000


class _Refused(Exception):
    """Nothing was touched: exit 2 with this message."""


def _refused(message: str, **document: Any) -> Outcome:
    return Outcome(
        EXIT_BAD_INPUT, {"ok": False, "error": message, **document}, error=message, result="refused"
    )


def _failed(message: str, **document: Any) -> Outcome:
    return Outcome(
        EXIT_FAILED, {"ok": False, "error": message, **document}, error=message, result="failed"
    )


def _targets(inventory: Inventory) -> Targets:
    try:
        targets = deployed_targets(inventory)
        tier_target(targets, "postgresql")
    except (TargetsError, BackupError) as exc:
        raise _Refused(str(exc)) from None
    return targets


@contextlib.contextmanager
def _postgres(targets: Targets) -> Iterator[psycopg.Connection[Any]]:
    with postgres_connect(tier_target(targets, "postgresql")) as conn:
        yield conn


def _scope(tenant: str, row: uuid.UUID | None) -> str:
    return f"row {row} of tenant {tenant!r}" if row else f"the live facts of tenant {tenant!r}"


# -- memory.rejudge ----------------------------------------------------------------------


def rejudge(
    context: Context, *, tenant: str, row: uuid.UUID | None, dry_run: bool, yes: bool
) -> Outcome:
    inventory = context.require_inventory()
    scope = _scope(tenant, row)
    try:
        targets = _targets(inventory)
        with _postgres(targets) as conn:
            planned = supersede.rejudge(conn, tenant, row=row, actor=actor(), dry_run=True)
            if planned.refused:
                raise _Refused(f"{scope}: {supersede.ROW_REASONS[planned.reason]}; nothing changed")
            if dry_run or planned.count == 0:  # nothing to confirm, nothing to audit
                return _rejudge_outcome(replace(planned, dry_run=dry_run), scope, None)
            confirm(f"put {planned.count} row(s) back into the judge queue ({scope})", yes=yes)
            done = supersede.rejudge(conn, tenant, row=row, actor=actor())
    except _Refused as exc:
        return _refused(str(exc), tenant=tenant, row=str(row) if row else None, changed=0)
    except NotConfirmed as exc:
        return _refused(str(exc), tenant=tenant, changed=0)
    except psycopg.Error as exc:
        return _failed(f"postgresql: {exc}".strip(), tenant=tenant)
    return _rejudge_outcome(done, scope, targets, inventory)


def _rejudge_outcome(
    result: supersede.RejudgeResult,
    scope: str,
    targets: Targets | None,
    inventory: Inventory | None = None,
) -> Outcome:
    document: dict[str, Any] = {"ok": True, "changed": 0 if result.dry_run else result.count}
    document |= result.to_dict()
    if result.dry_run:
        lines = [f"dry run: would rejudge {result.count} row(s): {scope} (nothing changed)"]
    elif result.reason == supersede.ROW_QUEUED:
        lines = [f"{scope}: {supersede.ROW_REASONS[result.reason]}; 0 rows changed"]
    elif result.audit_id is None:
        lines = [f"nothing to rejudge: {scope} has no judged live fact; 0 rows changed"]
    else:
        lines = [
            f"rejudged {result.count} row(s): {scope} (judge_at set to NULL, "
            f"audit row {result.audit_id})"
        ]
    if targets is not None and inventory is not None:
        document["health"], health = probe_line(targets, inventory)
        lines.append(health)
    return Outcome(
        EXIT_OK,
        document,
        lines=lines,
        result="dry-run" if result.dry_run else "ok",
        audit={"tenant": result.tenant, "row": result.row, "count": document["changed"]},
    )


# -- memory.chain ------------------------------------------------------------------------


def chain(context: Context, *, row: uuid.UUID, tenant: str, max_depth: int) -> Outcome:
    inventory = context.require_inventory()
    try:
        with _postgres(_targets(inventory)) as conn:
            walked = supersede.walk_chain(conn, row, tenant=tenant or None, max_depth=max_depth)
    except _Refused as exc:
        return _refused(str(exc))
    except psycopg.Error as exc:
        return _failed(f"postgresql: {exc}".strip())
    if not walked.found:
        where = f" in tenant {tenant!r}" if tenant else ""
        return _refused(f"row {row}: no such row{where}", row=str(row))
    document = {"ok": not walked.cycle_at, "tenant": walked.tenant, **walked.to_dict()}
    lines, notes = _chain_lines(walked)
    error = ""
    if walked.cycle_at:
        error = f"supersede cycle: row(s) {', '.join(walked.cycle_at)} reached twice"
    return Outcome(
        EXIT_FAILED if walked.cycle_at else EXIT_OK,
        document,
        lines=lines,
        notes=notes,
        error=error,
        result="cycle" if walked.cycle_at else "ok",
        audit={"row": str(row), "links": len(walked.links), "truncated": walked.truncated},
    )


def _when(value: Any) -> str:
    return value.isoformat(timespec="seconds") if value is not None else "-"


def _chain_lines(walked: supersede.Chain) -> tuple[list[str], list[str]]:
    state = "live head" if walked.head else "NOT the head (superseded)"
    lines = [
        f"chain of {walked.row} (tenant {walked.tenant!r}): {len(walked.links)} row(s), "
        f"start row is the {state}",
        f"  {'depth':>5}  {'id':<36}  {'kind':<11}  {'created_at':<25}  {'judge_at':<25}  "
        "deleted_at",
    ]
    lines += [
        f"  {link.depth:>5}  {link.id:<36}  {link.source_kind:<11}  "
        f"{_when(link.created_at):<25}  {_when(link.judge_at):<25}  {_when(link.deleted_at)}"
        for link in walked.links
    ]
    notes = []
    if not walked.head and walked.links:
        notes.append(
            f"row {walked.row} is superseded by {walked.links[0].superseded_by}: "
            "the walk shows only what it replaced"
        )
    if walked.truncated:
        notes.append(f"stopped at --max-depth {walked.max_depth}: older rows were not walked")
    return lines, notes


REJUDGE = Operation(
    "memory.rejudge",
    rejudge,
    options={
        "tenant": options.name_value(),
        "row": options.uuid_value(required=False),
        "dry_run": options.flag(),
        "yes": options.flag(),
    },
    locks=True,
)
CHAIN = Operation(
    "memory.chain",
    chain,
    options={
        "row": options.uuid_value(),
        "tenant": options.name_value(required=False),
        "max_depth": options.integer(
            default=supersede.DEFAULT_MAX_DEPTH, minimum=1, maximum=MAX_CHAIN_DEPTH
        ),
    },
)
