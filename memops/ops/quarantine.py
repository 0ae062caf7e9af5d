"""`rebuild.quarantine` and `rebuild.release`: cut the app's credentials off one namespace.

The procedure is memops.quarantine.procedure; this module checks, asks, runs it,
keeps the change across restarts (playbooks/quarantine.yml writes the Redis
secrets file from the record) and turns it into an Outcome. Refusals before
anything changed are exit 2; a failure half way is exit 1 and says what is left.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import psycopg
import redis
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from memops.deploy.playbook import PlaybookOptions, run_playbook
from memops.deploy.targets import TargetsError
from memops.exitcodes import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK
from memops.ops import options
from memops.ops.backup import probe_line
from memops.ops.confirm import NotConfirmed, confirm
from memops.ops.health import deployed_targets
from memops.ops.runner import Context, Operation, Outcome
from memops.quarantine import procedure
from memops.quarantine.postgresql import PostgresQuarantineError
from memops.quarantine.redis import RedisQuarantineError
from memops.quarantine.state import TIERS, QuarantineStateError

PLAYBOOK = "quarantine"


def _refused(message: str, **document: Any) -> Outcome:
    return Outcome(
        EXIT_BAD_INPUT, {"ok": False, "error": message, **document}, error=message, result="refused"
    )


def quarantine(
    context: Context, *, namespace: str, tier: Sequence[str], dry_run: bool, yes: bool
) -> Outcome:
    return _run(context, namespace, tuple(tier) or TIERS, dry_run, yes, quarantine=True)


def release(
    context: Context, *, namespace: str, tier: Sequence[str], dry_run: bool, yes: bool
) -> Outcome:
    return _run(context, namespace, tuple(tier) or TIERS, dry_run, yes, quarantine=False)


def _run(
    context: Context,
    tenant: str,
    tiers: tuple[str, ...],
    dry_run: bool,
    yes: bool,
    *,
    quarantine: bool,
) -> Outcome:
    inventory = context.require_inventory()
    state_dir = inventory.state_dir
    try:
        targets = deployed_targets(inventory)
        planned = procedure.plan(state_dir, targets, tenant, tiers, quarantine=quarantine)
        lines = _plan_lines(planned)
        if dry_run:
            lines[0] = f"dry run: would {lines[0]} (nothing changed)"
            preview: dict[str, Any] = {"ok": True, "dry_run": True, **planned.to_dict()}
            return Outcome(EXIT_OK, preview, lines=lines, result="dry-run", audit=planned.to_dict())
        confirm(f"{planned.verb} namespace {tenant!r} in {', '.join(planned.tiers)}", yes=yes)
    except (
        procedure.QuarantineRefused,
        RedisQuarantineError,
        PostgresQuarantineError,
        QuarantineStateError,
        TargetsError,
    ) as exc:
        return _refused(str(exc), tenant=tenant)
    except NotConfirmed as exc:
        return _refused(str(exc), tenant=tenant)
    except redis.RedisError as exc:
        return _refused(f"redis: {exc}; nothing changed", tenant=tenant)
    except psycopg.Error as exc:
        return _refused(f"postgresql: {exc}; nothing changed".strip(), tenant=tenant)
    except (ResponseHandlingException, UnexpectedResponse) as exc:
        return _refused(f"qdrant: {exc}; nothing changed", tenant=tenant)
    try:
        progress = procedure.execute(state_dir, targets, planned)
    except (QuarantineStateError, OSError) as exc:  # the record could not be written
        message = f"{planned.verb} of {tenant!r} stopped: {exc}; run it again"
        failed = Outcome.failed(message, **planned.to_dict())
        return replace(failed, audit=planned.to_dict())
    notes = _persist_redis(context) if "redis" in progress.done else []
    if not progress.complete:
        return _stopped_part_way(planned, progress, notes)
    record = {**planned.to_dict(), **progress.to_dict()}
    done = _plan_lines(planned, done=True)
    document: dict[str, Any] = {"ok": True, "dry_run": False, **record}
    document["health"], health = probe_line(targets, inventory)
    return Outcome(
        EXIT_OK,
        document,
        lines=[*done, health],
        notes=notes,
        result="ok",
        audit=record,
    )


def _persist_redis(context: Context) -> list[str]:
    """Write the live ACL into the Redis secrets file; a note when that failed."""
    persisted = run_playbook(
        PLAYBOOK, context.require_inventory(), PlaybookOptions(), echo=context.echo
    )
    if persisted.ok:
        return []
    return [
        f"the live ACL is changed but the Redis secrets file was not rewritten "
        f"({persisted.error_line}); a restart before the next deploy would undo it: "
        "run `invoke deploy --tags redis`"
    ]


def _stopped_part_way(
    planned: procedure.Plan, progress: procedure.Progress, notes: list[str]
) -> Outcome:
    """Exit 1 naming the tiers done and those still open (on record: a re-run does them)."""
    still_open = ",".join(progress.failed)
    again = f"invoke rebuild.{planned.verb} {shlex.quote(planned.tenant)} --tier {still_open}"
    message = (
        f"{planned.verb} of {planned.tenant!r} stopped part way: done in "
        f"{', '.join(progress.done) or 'no tier'}; still open: {', '.join(progress.failed)}; "
        f"run `{again}` to finish"
    )
    lines = _plan_lines(planned, done=True, tiers=progress.done) if progress.done else []
    lines += [f"  {tier}: failed, still open: {error}" for tier, error in progress.failed.items()]
    record = {**planned.to_dict(), **progress.to_dict()}
    return Outcome(
        EXIT_FAILED,
        {"ok": False, "dry_run": False, "error": message, **record},
        lines=lines,
        notes=notes,
        error=message,
        result="partial",
        audit=record,
    )


def _plan_lines(
    planned: procedure.Plan, *, done: bool = False, tiers: Sequence[str] | None = None
) -> list[str]:
    """The summary line and one line per tier (of ``tiers`` only, when given)."""
    verb = ("quarantined" if planned.quarantine else "released") if done else planned.verb
    shown = planned.tiers if tiers is None else tuple(tiers)
    lines = [f"{verb} namespace {planned.tenant!r} in {', '.join(shown)}"]
    for tier in shown:
        change = planned.changes.get(tier)
        if change:
            lines += _TIER_LINES[tier](planned, change)
    return lines


def _redis_lines(planned: procedure.Plan, change: dict[str, Any]) -> list[str]:
    after = (
        "the role's own pattern again"
        if change["restores_base"]
        else f"{change['patterns_after']} patterns"
    )
    lines = [
        f"  redis: ACL user {change['user']!r}: key patterns "
        f"{change['patterns_before']} -> {after} (no key is touched)"
    ]
    if change.get("unreachable"):
        missing = ", ".join(change["unreachable"])
        lines.append(f"  redis: not answering, left open for the next run: {missing}")
    return lines


def _postgresql_lines(planned: procedure.Plan, change: dict[str, Any]) -> list[str]:
    hidden = "hidden from" if planned.quarantine else "visible again to"
    return [
        f"  postgresql: {change['rows']} memory_items row(s) {hidden} the application role "
        f"(memory_quarantine; memops connects as {change['role']!r}, which still sees them)"
    ]


def _qdrant_lines(planned: procedure.Plan, change: dict[str, Any]) -> list[str]:
    points = change["points"]
    where = "into quarantine collections" if planned.quarantine else "back from quarantine"
    return [
        f"  qdrant: {sum(points.values())} point(s) of {len(points)} collection(s) move "
        f"{where} (memops-quarantine-*; copied and checked before the source copy goes)",
        *_qdrant_access_lines(planned, change),
    ]


_TIER_LINES = {"redis": _redis_lines, "postgresql": _postgresql_lines, "qdrant": _qdrant_lines}


def _qdrant_access_lines(planned: procedure.Plan, change: dict[str, Any]) -> list[str]:
    """What the application's own Qdrant credential can still do (memops.deploy.qdrant_token)."""
    lines = []
    arrived = change.get("arrived_during_quarantine") or {}
    if arrived:
        lines.append(
            f"  qdrant: {sum(arrived.values())} point(s) of the namespace were written to "
            f"{', '.join(sorted(arrived))} during the quarantine: kept; check them with "
            "`invoke rebuild.validate`"
        )
    if not planned.quarantine:
        return lines
    if change["app_collections"]:
        lines.append(
            f"  qdrant: the application's token reaches only its {len(change['app_collections'])} "
            "collection(s), not the quarantine ones; it can still write new points of this "
            "namespace into them"
        )
    else:
        lines.append(
            "  qdrant: warning: the application holds the API key (qdrant_app_collections is "
            "empty): it can still read the quarantine collections"
        )
    return lines


QUARANTINE = Operation.destructive(
    "rebuild.quarantine", quarantine, namespace=options.NAMESPACE, tier=options.TIERS
)
RELEASE = Operation.destructive(
    "rebuild.release", release, namespace=options.NAMESPACE, tier=options.TIERS
)
