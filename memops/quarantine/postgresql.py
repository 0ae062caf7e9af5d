"""PostgreSQL part of a quarantine: a row in memory_quarantine hides the tenant's rows.

Migration 0005_quarantine puts a row-level security policy on memory_items (FORCEd,
since the application role owns the table) that hides every tenant listed in
memory_quarantine. memops must connect as a role that bypasses row security
(postgresql_ops_user): otherwise it would hide the namespace from itself, and
pg_dump would fail. Both are checked before anything changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from psycopg.types.json import Jsonb

from memops.errors import Failed
from memops.schema.migrate import Migration, discover

QUARANTINE_VERSION = 5


QUARANTINE_MIGRATION: Migration = next(m for m in discover() if m.version == QUARANTINE_VERSION)


class PostgresQuarantineError(Failed):
    """The database cannot quarantine safely: nothing was changed."""


@dataclass(frozen=True)
class Change:
    rows: int  # the tenant's memory_items rows the app role stops (or starts again) seeing
    role: str  # the role memops connects as

    def to_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "role": self.role}


def check(conn: Any) -> str:
    """The role memops connects as; refuses a schema without 0005 or a role RLS applies to."""
    row = conn.execute(
        "SELECT to_regclass('memory_quarantine') IS NOT NULL, current_user,"
        " (SELECT rolbypassrls OR rolsuper FROM pg_roles WHERE rolname = current_user)"
    ).fetchone()
    has_table, role, bypasses = row
    if not has_table:
        raise PostgresQuarantineError(
            "postgresql: no memory_quarantine table (migration 0005_quarantine): "
            "deploy (it migrates) first; nothing changed"
        )
    if not bypasses:
        raise PostgresQuarantineError(
            f"postgresql: memops connects as {role!r}, which row security applies to: a "
            "quarantine would hide the namespace from memops' own backups too; deploy "
            "postgresql_ops_user (BYPASSRLS) and connect as it; nothing changed"
        )
    return str(role)


def row_security_on(conn: Any) -> bool:
    """Whether a memory_quarantine row hides its tenant here: the table, row security on
    memory_items (enabled and forced, the owner being the application) and the policy."""
    row = conn.execute(
        "SELECT to_regclass('memory_quarantine') IS NOT NULL"
        " AND coalesce((SELECT relrowsecurity AND relforcerowsecurity FROM pg_class"
        "               WHERE oid = to_regclass('memory_items')), false)"
        " AND EXISTS (SELECT 1 FROM pg_policies WHERE tablename = 'memory_items'"
        "             AND policyname = 'memory_items_outside_quarantine')"
    ).fetchone()
    return bool(row[0])


def quarantined(conn: Any) -> set[str]:
    return {row[0] for row in conn.execute("SELECT tenant_id FROM memory_quarantine")}


def plan(conn: Any, tenant: str) -> Change:
    role = check(conn)
    row = conn.execute(
        "SELECT count(*) FROM memory_items WHERE tenant_id = %s", [tenant]
    ).fetchone()
    return Change(int(row[0]), role)


def apply(conn: Any, tenant: str, *, quarantine: bool, actor: str) -> None:
    """INSERT (or DELETE) the tenant's row and an audit row, in one transaction."""
    with conn.transaction():
        if quarantine:
            done = conn.execute(
                "INSERT INTO memory_quarantine (tenant_id, actor) VALUES (%s, %s)"
                " ON CONFLICT (tenant_id) DO NOTHING",
                [tenant, actor],
            )
        else:
            done = conn.execute("DELETE FROM memory_quarantine WHERE tenant_id = %s", [tenant])
        action = "rebuild.quarantine" if quarantine else "rebuild.release"
        conn.execute(
            "INSERT INTO execution_audit_log (actor, action, tenant_id, details)"
            " VALUES (%s, %s, %s, %s)",
            [actor, action, tenant, Jsonb({"changed": done.rowcount})],
        )
