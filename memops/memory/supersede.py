"""Supersede lifecycle on ``memory_items``: rejudge facts, walk chains, anonymize.

Pure procedures on a psycopg connection: they build parametrized SQL, run it
and return plain results; they never print (memops.ops.memory turns results
into Outcomes). Tenant names are data: they only ever travel as parameters.

- rejudge: put live facts back into the judge queue (``judge_at`` = NULL), one
  row or a whole tenant, with the UPDATE and its audit row in one transaction.
- chain: walk a supersede chain backwards (older rows point at newer ones
  through ``superseded_by``) from a row, cycle-safe and depth-limited.
- anonymize: redact rows past their retention (soft-deleted, superseded), in
  batches, behind a per-tenant safety floor.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from memops.memory.values import content_hash

FACT = "fact"
REJUDGE_ACTION = "memory.rejudge"

# What `rejudge --row` found the row to be.
ROW_LIVE_FACT = "live-fact"  # will be queued again
ROW_QUEUED = "already-queued"  # live fact whose judge_at is already NULL: nothing to do
ROW_MISSING = "no-such-row"
ROW_OTHER_TENANT = "other-tenant"  # exists, but not in the tenant given
ROW_SUPERSEDED = "superseded"
ROW_DELETED = "deleted"
ROW_NOT_FACT = "not-a-fact"
ROW_REASONS = {
    ROW_LIVE_FACT: "a live fact",
    ROW_QUEUED: "already in the judge queue (judge_at is NULL)",
    ROW_MISSING: "no such row",
    ROW_OTHER_TENANT: "the row belongs to another namespace",
    ROW_SUPERSEDED: "the row is superseded (only live facts are judged)",
    ROW_DELETED: "the row is deleted",
    ROW_NOT_FACT: "the row is not a fact (only facts are judged)",
}
ROW_ACCEPTED = frozenset({ROW_LIVE_FACT, ROW_QUEUED})  # not a refusal

DEFAULT_MAX_DEPTH = 100


# -- rejudge -------------------------------------------------------------------------

# A live fact that the judge has seen: the only rows rejudge changes.
_REQUEUEABLE = sql.SQL(
    "source_kind = {fact} AND superseded_by IS NULL AND deleted_at IS NULL AND judge_at IS NOT NULL"
).format(fact=sql.Literal(FACT))


def rejudge_where(tenant: str, row: uuid.UUID | None) -> tuple[sql.Composable, tuple[Any, ...]]:
    """The WHERE clause (and its parameters) of both the count and the UPDATE."""
    parts: list[sql.Composable] = [sql.SQL("tenant_id = %s")]
    params: list[Any] = [tenant]
    if row is not None:
        parts.append(sql.SQL("id = %s"))
        params.append(row)
    parts.append(_REQUEUEABLE)
    return sql.SQL(" AND ").join(parts), tuple(params)


@dataclass(frozen=True)
class RejudgeResult:
    tenant: str
    row: str | None
    reason: str  # ROW_* for a row; ROW_LIVE_FACT for a tenant
    count: int  # rows changed, or that a dry run would change
    dry_run: bool
    audit_id: int | None = None

    @property
    def refused(self) -> bool:
        return self.reason not in ROW_ACCEPTED

    def to_dict(self) -> dict[str, Any]:
        return {
            "tenant": self.tenant,
            "row": self.row,
            "reason": self.reason,
            "reason_text": ROW_REASONS[self.reason],
            "count": self.count,
            "dry_run": self.dry_run,
            "audit_id": self.audit_id,
        }


def classify_row(cur: psycopg.Cursor[Any], tenant: str, row: uuid.UUID) -> str:
    """What ``row`` is for ``tenant`` (ROW_*); another tenant's name is never read."""
    cur.execute(
        "SELECT source_kind, superseded_by IS NOT NULL, deleted_at IS NOT NULL, judge_at IS NULL"
        " FROM memory_items WHERE tenant_id = %s AND id = %s",
        (tenant, row),
    )
    found = cur.fetchone()
    if found is None:
        cur.execute("SELECT EXISTS (SELECT 1 FROM memory_items WHERE id = %s)", (row,))
        exists = cur.fetchone()
        return ROW_OTHER_TENANT if exists and exists[0] else ROW_MISSING
    kind, superseded, deleted, queued = found
    if kind != FACT:
        return ROW_NOT_FACT
    if superseded:
        return ROW_SUPERSEDED
    if deleted:
        return ROW_DELETED
    return ROW_QUEUED if queued else ROW_LIVE_FACT


def audit_event(
    cur: psycopg.Cursor[Any],
    actor: str,
    action: str,
    tenant: str | None,
    details: Mapping[str, Any],
) -> int:
    """Append one row to execution_audit_log (in the caller's transaction); its id."""
    cur.execute(
        "INSERT INTO execution_audit_log (actor, action, tenant_id, details)"
        " VALUES (%s, %s, %s, %s) RETURNING id",
        (actor, action, tenant, Jsonb(dict(details))),
    )
    inserted = cur.fetchone()
    assert inserted is not None  # INSERT … RETURNING always returns the row
    return int(inserted[0])


def rejudge(
    conn: psycopg.Connection[Any],
    tenant: str,
    *,
    row: uuid.UUID | None = None,
    actor: str,
    dry_run: bool = False,
) -> RejudgeResult:
    """Set judge_at back to NULL for ``row`` (or every live fact of ``tenant``).

    Classification, count, UPDATE and audit row share one transaction: the
    audit row exists exactly when the change does.
    """
    shown = str(row) if row is not None else None
    where, params = rejudge_where(tenant, row)
    with conn.transaction(), conn.cursor() as cur:
        reason = classify_row(cur, tenant, row) if row is not None else ROW_LIVE_FACT
        if reason != ROW_LIVE_FACT:
            return RejudgeResult(tenant, shown, reason, 0, dry_run)
        if dry_run:
            cur.execute(sql.SQL("SELECT count(*) FROM memory_items WHERE {}").format(where), params)
            counted = cur.fetchone()
            return RejudgeResult(tenant, shown, reason, int(counted[0]) if counted else 0, True)
        cur.execute(
            sql.SQL("UPDATE memory_items SET judge_at = NULL WHERE {}").format(where), params
        )
        count = cur.rowcount
        details: dict[str, Any] = {"count": count} | ({"row": shown} if shown else {})
        audit_id = audit_event(cur, actor, REJUDGE_ACTION, tenant, details)
    return RejudgeResult(tenant, shown, reason, count, False, audit_id)


# -- chain ---------------------------------------------------------------------------

CHAIN_COLUMNS = (
    "id",
    "source_kind",
    "created_at",
    "judge_at",
    "deleted_at",
    "anonymized_at",
    "superseded_by",
)

# Backwards from the start row: the rows whose superseded_by is a row already
# reached, in the same tenant. ``path`` holds the ids on the way, so a row seen
# again marks a cycle and stops that branch; the walk goes one level past
# max_depth only to learn whether the limit cut something off.
_CHAIN = sql.SQL(
    """
    WITH RECURSIVE chain (id, depth, path, cycle) AS (
        SELECT m.id, 0, ARRAY[m.id], false
        FROM memory_items m WHERE m.tenant_id = %(tenant)s AND m.id = %(row)s
      UNION ALL
        SELECT o.id, c.depth + 1, c.path || o.id, o.id = ANY(c.path)
        FROM chain c
        JOIN memory_items o ON o.tenant_id = %(tenant)s AND o.superseded_by = c.id
        WHERE NOT c.cycle AND c.depth <= %(max_depth)s
    )
    SELECT c.depth, c.cycle, {columns}
    FROM chain c JOIN memory_items m ON m.tenant_id = %(tenant)s AND m.id = c.id
    ORDER BY c.depth, m.created_at DESC, m.id
    """
).format(columns=sql.SQL(", ").join(sql.Identifier("m", col) for col in CHAIN_COLUMNS))


@dataclass(frozen=True)
class ChainLink:
    depth: int  # 0 = the start row, 1 = the rows it superseded, …
    id: str
    source_kind: str
    created_at: datetime
    judge_at: datetime | None
    deleted_at: datetime | None
    anonymized_at: datetime | None
    superseded_by: str | None

    def to_dict(self) -> dict[str, Any]:
        def when(value: datetime | None) -> str | None:
            return value.isoformat() if value is not None else None

        return {
            "depth": self.depth,
            "id": self.id,
            "source_kind": self.source_kind,
            "created_at": when(self.created_at),
            "judge_at": when(self.judge_at),
            "deleted_at": when(self.deleted_at),
            "anonymized_at": when(self.anonymized_at),
            "superseded_by": self.superseded_by,
        }


@dataclass(frozen=True)
class Chain:
    row: str
    tenant: str | None  # None: no such row (in that tenant, when one was given)
    links: Sequence[ChainLink] = ()
    max_depth: int = DEFAULT_MAX_DEPTH
    truncated: bool = False  # rows older than max_depth exist and were not walked
    cycle_at: Sequence[str] = field(default_factory=tuple)  # rows reached a second time

    @property
    def found(self) -> bool:
        return bool(self.links)

    @property
    def head(self) -> bool:
        """True when the start row is live (superseded by nothing)."""
        return bool(self.links) and self.links[0].superseded_by is None

    def to_dict(self) -> dict[str, Any]:
        return {
            "row": self.row,
            "found": self.found,
            "head": self.head,
            "max_depth": self.max_depth,
            "truncated": self.truncated,
            "cycle": bool(self.cycle_at),
            "cycle_at": list(self.cycle_at),
            "links": [link.to_dict() for link in self.links],
        }


def row_tenant(conn: psycopg.Connection[Any], row: uuid.UUID) -> str | None:
    found = conn.execute("SELECT tenant_id FROM memory_items WHERE id = %s", (row,)).fetchone()
    return str(found[0]) if found else None


def walk_chain(
    conn: psycopg.Connection[Any],
    row: uuid.UUID,
    *,
    tenant: str | None = None,
    max_depth: int = DEFAULT_MAX_DEPTH,
) -> Chain:
    """The start row and every row it (transitively) superseded, newest first.

    Without ``tenant`` the start row's own tenant is used; with it, a row of
    another tenant is not found. Never reads content.
    """
    with conn.transaction(), conn.cursor() as cur:
        tenant = tenant if tenant is not None else row_tenant(conn, row)
        if tenant is None:
            return Chain(str(row), None, max_depth=max_depth)
        cur.execute(_CHAIN, {"tenant": tenant, "row": row, "max_depth": max_depth})
        rows = cur.fetchall()
    links, cycles, truncated = [], [], False
    for depth, cycle, *values in rows:
        record = dict(zip(CHAIN_COLUMNS, values, strict=True))
        if cycle:
            cycles.append(str(record["id"]))
        elif depth > max_depth:
            truncated = True
        else:
            record["id"] = str(record["id"])
            if record["superseded_by"] is not None:
                record["superseded_by"] = str(record["superseded_by"])
            links.append(ChainLink(depth=depth, **record))
    if not links:
        return Chain(str(row), None, max_depth=max_depth)
    return Chain(str(row), tenant, links, max_depth, truncated, tuple(cycles))


# -- anonymize -----------------------------------------------------------------------

ANONYMIZE_ACTION = "memory.anonymize"
REDACTED = "[REDACTED]"  # memory_items_content_check would allow NULL too; this says why
DEFAULT_SOFT_TTL_DAYS = 30.0
DEFAULT_SUPERSEDE_TTL_DAYS = 90.0
DEFAULT_MAX_SHARE = 0.5
DEFAULT_MASS_MIN_ROWS = 1  # every tenant is held to the share; raise it to spare tiny ones
DEFAULT_BATCH_SIZE = 1000

# Due rows, on memory_items m LEFT JOIN its newer row n. A soft-deleted row is
# due soft_ttl after deleted_at. A superseded row is due supersede_ttl after it
# was superseded; no column records that moment, so the best lower bound
# stands in for it: the later of the newer row's created_at (the judge cannot
# supersede before the newer fact exists) and the row's own judge_at (the
# judge's verdict on it). GREATEST ignores NULLs.
_DUE = sql.SQL(
    "m.anonymized_at IS NULL AND ("
    "COALESCE(m.deleted_at < now() - %(soft_ttl)s, false)"
    " OR (m.superseded_by IS NOT NULL"
    " AND COALESCE(GREATEST(n.created_at, m.judge_at) < now() - %(supersede_ttl)s, false)))"
)
_FROM = sql.SQL(
    "FROM memory_items m"
    " LEFT JOIN memory_items n ON n.tenant_id = m.tenant_id AND n.id = m.superseded_by"
)
_PLAN = sql.SQL(
    "SELECT m.tenant_id, count(*),"
    " count(*) FILTER (WHERE {due}),"
    " count(*) FILTER (WHERE {due} AND m.deleted_at IS NOT NULL)"
    " {from_} {where} GROUP BY m.tenant_id ORDER BY m.tenant_id"
)
_BATCH = sql.SQL(
    "SELECT m.id {from_} WHERE m.tenant_id = %(tenant)s AND {due}"
    " ORDER BY m.id LIMIT %(batch)s FOR UPDATE OF m"
)
_REDACT = sql.SQL(
    "UPDATE memory_items SET content = %(redacted)s, content_hash = %(redacted_hash)s,"
    " user_id = NULL, agent_id = NULL,"
    " embedding = NULL, indexed_at = NULL, anonymized_at = now()"
    " WHERE tenant_id = %(tenant)s AND id = ANY(%(ids)s) AND anonymized_at IS NULL"
)

# Removes the Qdrant points of (tenant, ids); returns how many it removed.
PointRemover = Callable[[str, Sequence[uuid.UUID]], int]


@dataclass(frozen=True)
class Retention:
    """When rows are due and when a run counts as a mass run."""

    soft_ttl_days: float = DEFAULT_SOFT_TTL_DAYS
    supersede_ttl_days: float = DEFAULT_SUPERSEDE_TTL_DAYS
    max_share: float = DEFAULT_MAX_SHARE  # of a tenant's rows (all of them, any state)
    mass_min_rows: int = DEFAULT_MASS_MIN_ROWS  # fewer due rows than this are never a mass
    allow_mass: bool = False

    def params(self) -> dict[str, Any]:
        return {
            "soft_ttl": timedelta(days=self.soft_ttl_days),
            "supersede_ttl": timedelta(days=self.supersede_ttl_days),
        }

    def is_mass(self, due: int, total: int) -> bool:
        return due >= self.mass_min_rows and due > self.max_share * total


@dataclass(frozen=True)
class TenantPlan:
    tenant: str
    total: int  # every row of the tenant
    due: int
    deleted: int  # of the due rows: soft-deleted ones (the rest are superseded)
    mass: bool  # over the safety floor
    blocked: bool  # over it and not allowed

    def to_dict(self) -> dict[str, Any]:
        return {
            "tenant": self.tenant,
            "total": self.total,
            "due": self.due,
            "due_deleted": self.deleted,
            "due_superseded": self.due - self.deleted,
            "share": round(self.due / self.total, 4) if self.total else 0.0,
            "mass": self.mass,
            "blocked": self.blocked,
        }


@dataclass(frozen=True)
class TenantDone:
    tenant: str
    redacted: int
    points_deleted: int
    batches: int
    audit_ids: Sequence[int]


def plan_anonymize(
    conn: psycopg.Connection[Any], retention: Retention, *, tenant: str | None = None
) -> list[TenantPlan]:
    """Per tenant: its rows, the due ones, and whether the safety floor holds it back."""
    where = sql.SQL("WHERE m.tenant_id = %(tenant)s") if tenant is not None else sql.SQL("")
    query = _PLAN.format(due=_DUE, from_=_FROM, where=where)
    with conn.transaction(), conn.cursor() as cur:
        cur.execute(query, retention.params() | {"tenant": tenant})
        rows = cur.fetchall()
    plans = []
    for name, total, due, deleted in rows:
        mass = retention.is_mass(due, total)
        plans.append(TenantPlan(name, total, due, deleted, mass, mass and not retention.allow_mass))
    return plans


def anonymize_tenant(
    conn: psycopg.Connection[Any],
    plan: TenantPlan,
    retention: Retention,
    *,
    actor: str,
    batch_size: int = DEFAULT_BATCH_SIZE,
    remove_points: PointRemover | None = None,
) -> TenantDone:
    """Anonymize the tenant's due rows, one transaction (and one audit row) per batch.

    Each batch locks its rows, removes their Qdrant points, then redacts them:
    a failure in Qdrant leaves the rows as they were (a later run retries), and
    a point is never left behind for a row that is already anonymized.
    """
    params = retention.params() | {"tenant": plan.tenant, "batch": batch_size}
    redacted = points = 0
    audit_ids: list[int] = []
    for number in range(1, plan.due // batch_size + 2):  # bounded even if rows keep coming
        with conn.transaction(), conn.cursor() as cur:
            cur.execute(_BATCH.format(from_=_FROM, due=_DUE), params)
            ids = [row[0] for row in cur.fetchall()]
            if not ids:
                break
            removed = remove_points(plan.tenant, ids) if remove_points is not None else 0
            cur.execute(
                _REDACT,
                {
                    "redacted": REDACTED,
                    "redacted_hash": content_hash(REDACTED),
                    "tenant": plan.tenant,
                    "ids": ids,
                },
            )
            details = {
                "batch": number,
                "rows": cur.rowcount,
                "points_deleted": removed,
                "soft_ttl_days": retention.soft_ttl_days,
                "supersede_ttl_days": retention.supersede_ttl_days,
                "allow_mass": retention.allow_mass,
            }
            redacted += cur.rowcount
            points += removed
            audit_ids.append(audit_event(cur, actor, ANONYMIZE_ACTION, plan.tenant, details))
    return TenantDone(plan.tenant, redacted, points, len(audit_ids), tuple(audit_ids))
