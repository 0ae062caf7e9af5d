"""The `memory.*` operations: supersede-lifecycle procedures on episodic memory.

Each finds the deployed PostgreSQL of the inventory, calls one procedure of
``memops.memory.supersede`` and turns its result into an Outcome. A refusal before
anything changed (nothing deployed, unknown row, a row of another tenant, not
confirmed) is exit 2; a database error is exit 1.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import Any

import psycopg

from memops.audit import actor
from memops.backup.artifacts import BackupError
from memops.backup.engines import tier_target
from memops.backup.settings import inventory_vars
from memops.clients import postgres_connect
from memops.deploy.inventory import Inventory
from memops.deploy.targets import QdrantTarget, Targets, TargetsError
from memops.errors import Failed, Refused, store_failure
from memops.exitcodes import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK
from memops.memory import supersede
from memops.memory.qdrant_points import collection_names, delete_tenant_points
from memops.ops import options
from memops.ops.backup import probe_line, textfile_dir
from memops.ops.confirm import confirm
from memops.ops.health import deployed_targets
from memops.ops.runner import Context, Operation, Outcome
from memops.textfile import gauge, publish

MAX_CHAIN_DEPTH = 10_000


def _targets(inventory: Inventory) -> Targets:
    try:
        targets = deployed_targets(inventory)
        tier_target(targets, "postgresql")
    except (TargetsError, BackupError) as exc:
        raise Refused(str(exc)) from None
    return targets


@contextlib.contextmanager
def _postgres(targets: Targets) -> Iterator[psycopg.Connection[Any]]:
    with postgres_connect(tier_target(targets, "postgresql")) as conn:
        yield conn


def _scope(tenant: str, row: uuid.UUID | None) -> str:
    return (
        f"row {row} of namespace {tenant!r}" if row else f"the live facts of namespace {tenant!r}"
    )


# -- memory.rejudge ----------------------------------------------------------------------


def rejudge(
    context: Context, *, namespace: str, row: uuid.UUID | None, dry_run: bool, yes: bool
) -> Outcome:
    inventory, tenant = context.require_inventory(), namespace
    scope = _scope(tenant, row)
    try:
        targets = _targets(inventory)
        with _postgres(targets) as conn:
            planned = supersede.rejudge(conn, tenant, row=row, actor=actor(), dry_run=True)
            if planned.refused:
                raise Refused(f"{scope}: {supersede.ROW_REASONS[planned.reason]}; nothing changed")
            if dry_run or planned.count == 0:  # nothing to confirm, nothing to audit
                return _rejudge_outcome(replace(planned, dry_run=dry_run), scope, None)
            confirm(f"put {planned.count} row(s) back into the judge queue ({scope})", yes=yes)
            done = supersede.rejudge(conn, tenant, row=row, actor=actor())
    except Refused as exc:
        return Outcome.from_error(exc, tenant=tenant, row=str(row) if row else None, changed=0)
    except psycopg.Error as exc:
        return Outcome.from_error(store_failure(exc, "postgresql"), tenant=tenant)
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


def chain(context: Context, *, row: uuid.UUID, namespace: str, max_depth: int) -> Outcome:
    inventory, tenant = context.require_inventory(), namespace
    try:
        with _postgres(_targets(inventory)) as conn:
            walked = supersede.walk_chain(conn, row, tenant=tenant or None, max_depth=max_depth)
    except Refused as exc:
        return Outcome.from_error(exc)
    except psycopg.Error as exc:
        return Outcome.from_error(store_failure(exc, "postgresql"))
    if not walked.found:
        where = f" in namespace {tenant!r}" if tenant else ""
        return Outcome.from_error(Refused(f"row {row}: no such row{where}"), row=str(row))
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
        f"chain of {walked.row} (namespace {walked.tenant!r}): {len(walked.links)} row(s), "
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


# -- memory.anonymize --------------------------------------------------------------------

ANONYMIZE_TEXTFILE = "memops_anonymize.prom"
ANONYMIZE_ACTIONS = ("due", "redacted", "points_deleted", "blocked")
# An option not given takes the inventory's group_vars value of this name, then the default.
ANONYMIZE_VAR_PREFIX = "memory_anonymize_"
_S = supersede
_ANONYMIZE_PARSERS = {
    "soft_ttl_days": options.number(default=_S.DEFAULT_SOFT_TTL_DAYS, at_least=0),
    "supersede_ttl_days": options.number(default=_S.DEFAULT_SUPERSEDE_TTL_DAYS, at_least=0),
    "max_share": options.number(default=_S.DEFAULT_MAX_SHARE, greater_than=0, at_most=1),
    "mass_min_rows": options.integer(default=_S.DEFAULT_MASS_MIN_ROWS, minimum=1),
    "batch_size": options.integer(default=_S.DEFAULT_BATCH_SIZE, minimum=1, maximum=100_000),
}
_ANONYMIZE_MEANINGS = {
    "soft_ttl_days": "soft-deleted rows are due this many days after deleted_at",
    "supersede_ttl_days": "superseded rows are due this many days after they were superseded",
    "max_share": "the share of its rows due above which a namespace waits for --allow-mass",
    "mass_min_rows": "fewer due rows than this never count as a mass run",
    "batch_size": "rows per transaction, each with its audit row",
}
_ANONYMIZE_SETTINGS = {
    name: options.described(
        parse,
        f"{_ANONYMIZE_MEANINGS[name]} "
        f"(default: {ANONYMIZE_VAR_PREFIX}{name}, else {parse.default:g})",
    )
    for name, parse in _ANONYMIZE_PARSERS.items()
}


def _given(parse: options.Described) -> options.Described:
    """``parse``, except that an option not given stays None (the inventory decides)."""

    def parse_given(name: str, raw: Any) -> Any:
        return None if raw in (None, "") else parse(name, raw)

    return options.described(parse_given, parse.help)


def retention_settings(inventory: Inventory, given: dict[str, Any]) -> dict[str, Any]:
    """Each setting: its option, else group_vars ``memory_anonymize_<name>``, else the default."""
    variables = inventory_vars(inventory)
    settled = {}
    for name, parse in _ANONYMIZE_SETTINGS.items():
        value = given.get(name)
        if value is None:
            var = ANONYMIZE_VAR_PREFIX + name
            try:
                value = parse(name, variables.get(var))
            except options.OptionError as exc:
                accepts = str(exc).split(": ", 1)[1]
                raise Refused(f"inventory variable {var}: {accepts}") from None
        settled[name] = value
    return settled


def anonymize(
    context: Context, *, namespace: str, apply: bool, yes: bool, allow_mass: bool, **given: Any
) -> Outcome:
    inventory, tenant = context.require_inventory(), namespace
    done: list[supersede.TenantDone] = []
    try:
        settings = retention_settings(inventory, given)
        batch_size = settings.pop("batch_size")
        retention = supersede.Retention(**settings, allow_mass=allow_mass)
        targets = _targets(inventory)
        with _postgres(targets) as conn:
            plans = supersede.plan_anonymize(conn, retention, tenant=tenant or None)
            todo = [p for p in plans if p.due and not p.blocked]
            if apply and todo:
                due = sum(p.due for p in todo)
                confirm(f"anonymize {due} row(s) of {len(todo)} namespace(s)", yes=yes)
                with _point_remover(targets) as remove:
                    for plan in todo:
                        done.append(
                            supersede.anonymize_tenant(
                                conn,
                                plan,
                                retention,
                                actor=actor(),
                                batch_size=batch_size,
                                remove_points=remove,
                            )
                        )
    except Refused as exc:
        return Outcome.from_error(exc, changed=0)
    except psycopg.Error as exc:
        return Outcome.from_error(store_failure(exc, "postgresql"), redacted=_redacted(done))
    except Failed as exc:  # removing points failed; the batch in flight was rolled back
        return Outcome.from_error(exc, redacted=_redacted(done))
    return _anonymize_outcome(targets, inventory, plans, done, retention, apply=apply)


def _redacted(done: list[supersede.TenantDone]) -> int:
    return sum(d.redacted for d in done)


@contextlib.contextmanager
def _point_remover(targets: Targets) -> Iterator[supersede.PointRemover | None]:
    """Removes a tenant's points by id from every collection; None when Qdrant is not deployed.

    The filter holds the ids and the tenant: a point with one of those ids in
    another tenant's payload is not this row's point and stays.
    """
    try:
        target = tier_target(targets, "qdrant")
    except BackupError:
        yield None
        return
    import httpx
    from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

    from memops.clients import qdrant_client

    errors = (httpx.HTTPError, ResponseHandlingException, UnexpectedResponse)
    client = qdrant_client(target)
    try:
        try:
            names = collection_names(client)
        except errors as exc:
            raise store_failure(exc, "qdrant") from None

        def remove(tenant: str, ids: Sequence[uuid.UUID]) -> int:
            try:
                return delete_tenant_points(client, tenant, {name: ids for name in names})
            except errors as exc:
                raise store_failure(exc, "qdrant") from None

        yield remove
    finally:
        client.close()


def _floor_refusal(blocked: list[supersede.TenantPlan], retention: supersede.Retention) -> str:
    shown = "; ".join(
        f"namespace {p.tenant!r}: {p.due} of {p.total} rows due ({p.due / p.total:.0%})"
        for p in blocked
    )
    return (
        f"safety floor (at most {retention.max_share:.0%} of a namespace's rows): {shown}; "
        "those namespaces were left alone: check them, then pass --allow-mass"
    )


def _anonymize_outcome(
    targets: Targets,
    inventory: Inventory,
    plans: list[supersede.TenantPlan],
    done: list[supersede.TenantDone],
    retention: supersede.Retention,
    *,
    apply: bool,
) -> Outcome:
    blocked = [p for p in plans if p.blocked]
    counts = {
        "due": sum(p.due for p in plans),
        "redacted": _redacted(done),
        "points_deleted": sum(d.points_deleted for d in done),
        "blocked": sum(p.due for p in blocked),
    }
    _publish(targets, counts, dry_run=not apply)
    qdrant = any(isinstance(t, QdrantTarget) for t in targets.components.values())
    refusal = _floor_refusal(blocked, retention) if blocked else ""
    document: dict[str, Any] = {
        "ok": not (apply and blocked),
        "dry_run": not apply,
        "counts": counts,
        "settings": {
            "soft_ttl_days": retention.soft_ttl_days,
            "supersede_ttl_days": retention.supersede_ttl_days,
            "max_share": retention.max_share,
            "mass_min_rows": retention.mass_min_rows,
            "allow_mass": retention.allow_mass,
        },
        "tenants": [p.to_dict() for p in plans if p.due],
        "done": [
            {
                "tenant": d.tenant,
                "redacted": d.redacted,
                "points_deleted": d.points_deleted,
                "batches": d.batches,
                "audit_ids": list(d.audit_ids),
            }
            for d in done
        ],
        "qdrant": qdrant,
    }
    if refusal:
        document["error" if apply else "warning"] = refusal
    tenants_due = sum(1 for p in plans if p.due)
    if apply:
        head = (
            f"anonymized {counts['redacted']} row(s) in {len(done)} namespace(s), "
            f"{counts['points_deleted']} Qdrant point(s) removed; "
            f"{counts['due']} were due in {tenants_due} namespace(s)"
        )
    else:
        head = (
            f"dry run: {counts['due']} row(s) due in {tenants_due} namespace(s), "
            f"{counts['due'] - counts['blocked']} would be anonymized (nothing changed)"
        )
    lines = [head]
    lines += [
        f"  {p.tenant!r}: {p.due} due of {p.total} ({p.deleted} deleted, "
        f"{p.due - p.deleted} superseded)" + ("  BLOCKED by the safety floor" if p.blocked else "")
        for p in plans
        if p.due
    ]
    notes = [] if qdrant else ["qdrant is not deployed: no points to remove"]
    if done:
        document["health"], health = probe_line(targets, inventory)
        lines.append(health)
    audit = counts | {"dry_run": not apply, "tenants": [d.tenant for d in done]}
    if apply and blocked:  # nothing changed for them: a refusal, or a partial run when others ran
        code, result = (EXIT_FAILED, "partial") if done else (EXIT_BAD_INPUT, "refused")
        return Outcome(
            code, document, lines=lines, notes=notes, error=refusal, result=result, audit=audit
        )
    return Outcome(
        EXIT_OK,
        document,
        lines=lines,
        notes=notes + ([refusal] if refusal else []),
        result="ok" if apply else "dry-run",
        audit=audit,
    )


def _publish(targets: Targets, counts: dict[str, int], *, dry_run: bool) -> None:
    directory = textfile_dir(targets)
    if directory is None:
        return
    lines = anonymize_metric_lines(counts, time.time(), dry_run=dry_run)
    publish(directory, ANONYMIZE_TEXTFILE, lines)


def anonymize_metric_lines(
    counts: dict[str, int], finished_at: float, *, dry_run: bool
) -> list[str]:
    return [
        *gauge(
            "memops_anonymize_last_run_rows",
            "Rows of the last memory.anonymize run, by action (due, redacted, "
            "points_deleted, blocked by the safety floor).",
            [({"action": action}, counts[action]) for action in ANONYMIZE_ACTIONS],
        ),
        *gauge(
            "memops_anonymize_last_run_dry_run",
            "1 when the last memory.anonymize run was a dry run (it redacted nothing).",
            [({}, 1 if dry_run else 0)],
        ),
        *gauge(
            "memops_anonymize_last_run_timestamp_seconds",
            "Unix time the last memory.anonymize run finished.",
            [({}, finished_at)],
        ),
    ]


RENAMED = {"tenant": "namespace"}  # --tenant until the next release
REJUDGE = Operation.destructive(
    "memory.rejudge",
    rejudge,
    renamed=RENAMED,
    namespace=options.NAMESPACE,
    row=options.described(
        options.uuid_value(required=False),
        "only this memory item id (a UUID; default: every live fact of the namespace)",
    ),
)
CHAIN = Operation(
    "memory.chain",
    chain,
    {
        "row": options.described(options.uuid_value(), "the memory item id (a UUID)"),
        "namespace": options.described(
            options.name_value(required=False),
            "only look in this namespace (default: the row's own)",
        ),
        "max_depth": options.described(
            options.integer(
                default=supersede.DEFAULT_MAX_DEPTH, minimum=1, maximum=MAX_CHAIN_DEPTH
            ),
            f"walk at most this many rows back (default {supersede.DEFAULT_MAX_DEPTH}); "
            "a longer chain is truncated",
        ),
    },
    renamed=RENAMED,
)
ANONYMIZE = Operation(
    "memory.anonymize",
    anonymize,
    {
        "namespace": options.described(
            options.name_value(required=False), "only this namespace (default: every namespace)"
        ),
        "apply": options.described(
            options.flag(), "anonymize (without it: a dry run that only counts the rows due)"
        ),
        "yes": options.flag(),
        "allow_mass": options.described(
            options.flag(),
            "go ahead for namespaces over the safety floor (--max-share of their rows due)",
        ),
        **{name: _given(parse) for name, parse in _ANONYMIZE_SETTINGS.items()},
    },
    locks=True,
    renamed=RENAMED,
)
