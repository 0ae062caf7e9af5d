"""Soft rebuild: remove exactly the entries of a namespace that failed validation.

What goes, per tier (from a ``NamespaceReport`` taken just before):

- Redis: corrupt values (and undecryptable ones when asked) are deleted, each
  only if it still holds the value that failed: a compare-and-delete script per
  batch, so a value the application rewrote since is left alone and counted.
- PostgreSQL: corrupt rows are soft-deleted (``deleted_at``), never removed,
  in one transaction with their ``execution_audit_log`` row; the tenant and the
  id are both in the WHERE clause.
- Qdrant: corrupt and orphaned points go, and so do the points of the rows just
  soft-deleted, in whichever collection (a deleted row keeps no point); always
  by id and tenant filter.

A row without its point is not removed: its data is fine and ``rebuild.reindex``
gives it its point back.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from memops.keys.ring import KeyRing
from memops.memory.qdrant_points import collection_names
from memops.memory.supersede import audit_event
from memops.memory.values import CORRUPT, UNDECRYPTABLE, inspect_value
from memops.rebuild.validate import NO_POINT, ORPHANED, NamespaceReport

if TYPE_CHECKING:
    import psycopg
    import redis
    from qdrant_client import QdrantClient

AUDIT_ACTION = "rebuild.soft"
BATCH = 500

# KEYS: the keys; ARGV: the values that failed, in the same order. Deletes a key
# only while it still holds that value; returns how many it deleted.
_COMPARE_AND_DELETE = """
local removed = 0
for i, key in ipairs(KEYS) do
    if redis.call('GET', key) == ARGV[i] then
        redis.call('UNLINK', key)
        removed = removed + 1
    end
end
return removed
"""


@dataclass
class SoftPlan:
    """What a soft rebuild removes: ids per tier (points as (collection, id))."""

    tenant: str
    redis_keys: list[str] = field(default_factory=list)
    rows: list[str] = field(default_factory=list)
    points: list[tuple[str, str]] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.redis_keys or self.rows or self.points)

    def counts(self) -> dict[str, int]:
        return {
            "redis": len(self.redis_keys),
            "postgresql": len(self.rows),
            "qdrant": len(self.points),
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "redis_keys": list(self.redis_keys),
            "rows": list(self.rows),
            "points": [{"collection": c, "id": i} for c, i in self.points],
        }


@dataclass
class SoftDone:
    redis_deleted: int = 0
    redis_changed_since: int = 0  # rewritten after validation: left alone
    rows_deleted: list[str] = field(default_factory=list)
    points_deleted: int = 0
    audit_id: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "redis_deleted": self.redis_deleted,
            "redis_changed_since": self.redis_changed_since,
            "rows_soft_deleted": len(self.rows_deleted),
            "points_deleted": self.points_deleted,
            "audit_id": self.audit_id,
        }


def plan_soft(report: NamespaceReport, *, include_undecryptable: bool = False) -> SoftPlan:
    plan = SoftPlan(report.tenant)
    verdicts = {CORRUPT, UNDECRYPTABLE} if include_undecryptable else {CORRUPT}
    if "redis" in report.tiers:
        plan.redis_keys = [o.id for o in report.tiers["redis"].offenders if o.verdict in verdicts]
    if "postgresql" in report.tiers:
        plan.rows = [o.id for o in report.tiers["postgresql"].offenders if o.verdict == CORRUPT]
    if "qdrant" in report.tiers:
        plan.points = [
            (o.where, o.id)
            for o in report.tiers["qdrant"].offenders
            if o.verdict in (CORRUPT, ORPHANED)
        ]
    return plan


def rows_kept_without_point(report: NamespaceReport) -> list[str]:
    found = report.tiers.get("postgresql")
    return [o.id for o in found.offenders if o.reason == NO_POINT] if found else []


def delete_redis_values(
    client: redis.Redis, keys: Sequence[str], ring: KeyRing | None, verdicts: Iterable[str]
) -> tuple[int, int]:
    """Delete the keys whose value is still bad: (deleted, left because changed since)."""
    script = client.register_script(_COMPARE_AND_DELETE)
    wanted = set(verdicts)
    deleted = changed = 0
    for start in range(0, len(keys), BATCH):
        chunk = list(keys[start : start + BATCH])
        bad: list[tuple[str, bytes | str]] = []
        for key, raw in zip(chunk, client.mget(chunk), strict=True):
            if raw is None:
                changed += 1  # expired or removed meanwhile
            elif inspect_value(raw, key, ring).verdict in wanted:
                bad.append((key, raw))
            else:
                changed += 1
        if bad:
            removed = int(script(keys=[k for k, _ in bad], args=[raw for _, raw in bad]))
            deleted += removed
            changed += len(bad) - removed
    return deleted, changed


_SOFT_DELETE = """
UPDATE memory_items SET deleted_at = now()
WHERE tenant_id = %s AND id = ANY(%s::uuid[]) AND deleted_at IS NULL AND anonymized_at IS NULL
RETURNING id::text
"""


def soft_delete_rows(
    conn: psycopg.Connection[Any], tenant: str, rows: Sequence[str], *, actor: str, set_id: str
) -> tuple[list[str], int | None]:
    """Soft-delete the rows (tenant and id in the WHERE); the audit row in the same transaction."""
    if not rows:
        return [], None
    with conn.transaction(), conn.cursor() as cur:
        cur.execute(_SOFT_DELETE, (tenant, list(rows)))
        deleted = sorted(str(r[0]) for r in cur.fetchall())
        audit_id = audit_event(
            cur,
            actor,
            AUDIT_ACTION,
            tenant,
            {"soft_deleted": deleted, "reason": "failed validation", "backup_set": set_id},
        )
    return deleted, audit_id


def points_of_rows(client: QdrantClient, rows: Sequence[str]) -> dict[str, list[str]]:
    """The rows' ids in every collection (deleting one absent is a no-op)."""
    return {name: list(rows) for name in collection_names(client)}


def by_collection(points: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for collection, point_id in points:
        found.setdefault(collection, []).append(point_id)
    return found
