"""The NOLOGIN role that owns the audit log, and lending it to a migrating role.

Migration 0004 gives ``execution_audit_log`` (and its trigger function) to
``memops_audit_owner``, so the application role can only INSERT and SELECT:
it cannot disable or drop the append-only triggers, nor UPDATE, DELETE or
TRUNCATE the log. Migration 0007 gives it the schema public, ``memory_items``
and ``memory_quarantine`` too: the application can no longer drop the log
(a schema owner's right), turn row security off, or lift a quarantine.
From schema version 8 (``DATABASE_OWNER_VERSION``) it owns the database as
well, so the application cannot DROP DATABASE: 0008 grants the application
role its rights inside by name, and ``hand_over`` (the postgresql role does the
same with Ansible's modules) gives the database to its owner and the
application CONNECT and TEMPORARY on it.
Giving a table away, or taking it back in the down migration, needs
membership in the new owner; a superuser creates the role and lends
membership to the migrating role only while it migrates (the deploy does this
through Ansible's postgresql modules; tests and tools use ``lent``).

Every function here takes a superuser connection (autocommit).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import psycopg
from psycopg import sql

AUDIT_OWNER = "memops_audit_owner"  # fixed: migrations 0004 and 0007 name it
AUDIT_OWNER_VERSION = 4  # the schema version from which the audit log belongs to it
# From this schema version on the owner role owns the database too (migration 0008
# grants the application role its rights inside by name); below it the application
# role owns the database and holds its rights through pg_database_owner.
DATABASE_OWNER_VERSION = 8
# The migrations that give objects to the owner role (0007: the schema public,
# memory_items, memory_quarantine) and the application role its rights on them by name
# (0008): what ``secure`` runs again after a restore, in this order.
OWNER_VERSIONS = (AUDIT_OWNER_VERSION, 7, DATABASE_OWNER_VERSION)
# Names the role 0008 grants to when it is not the migrating one (``secure`` runs it as
# the superuser).
APP_ROLE_SETTING = "memops.app_role"


def ensure_role(admin: psycopg.Connection[Any]) -> bool:
    """Create the owner role (NOLOGIN, no privileges of its own); True when created."""
    row = admin.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (AUDIT_OWNER,)).fetchone()
    if row is not None:
        return False
    admin.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(AUDIT_OWNER)))
    return True


@contextlib.contextmanager
def lent(admin: psycopg.Connection[Any], role: str) -> Iterator[None]:
    """``role`` is a member of the owner role inside the block, and not after it."""
    ensure_role(admin)
    grant = sql.SQL("GRANT {} TO {}").format(sql.Identifier(AUDIT_OWNER), sql.Identifier(role))
    admin.execute(grant)
    try:
        yield
    finally:
        admin.execute(
            sql.SQL("REVOKE {} FROM {}").format(sql.Identifier(AUDIT_OWNER), sql.Identifier(role))
        )


def is_member(admin: psycopg.Connection[Any], role: str) -> bool:
    row = admin.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_auth_members m"
        " JOIN pg_roles g ON g.oid = m.roleid JOIN pg_roles r ON r.oid = m.member"
        " WHERE g.rolname = %s AND r.rolname = %s)",
        (AUDIT_OWNER, role),
    ).fetchone()
    return bool(row and row[0])


def audit_log_owner(conn: psycopg.Connection[Any]) -> str | None:
    """Who owns execution_audit_log in the connected database (None: no such table)."""
    row = conn.execute(
        "SELECT pg_get_userbyid(relowner) FROM pg_class"
        " WHERE oid = to_regclass('execution_audit_log')"
    ).fetchone()
    return str(row[0]) if row else None


def secure(admin_db: psycopg.Connection[Any], app_role: str) -> bool:
    """Give the owner role its objects again in a database a restore has loaded.

    pg_restore --no-owner makes the application role own every object it
    creates, the audit log included; this runs the statements of the migrations
    that hand objects over, and (0008) grant ``app_role`` its rights on them
    (``OWNER_VERSIONS``, each idempotent), that the schema has reached, as the
    superuser. False when the schema is older than 0004.
    """
    from memops.schema.migrate import current_version, discover

    version = current_version(admin_db)
    if version < AUDIT_OWNER_VERSION:
        return False
    migrations = discover()
    with admin_db.transaction():
        admin_db.execute("SELECT set_config(%s, %s, true)", (APP_ROLE_SETTING, app_role))
        for number in OWNER_VERSIONS:
            if number <= version:
                admin_db.execute(migrations[number - 1].up_sql)
    return True


def database_owner(version: int, app_role: str) -> str:
    """Who owns the database at schema ``version``: the owner role from 0008 on."""
    return AUDIT_OWNER if version >= DATABASE_OWNER_VERSION else app_role


def hand_over(admin: psycopg.Connection[Any], dbname: str, app_role: str, version: int) -> str:
    """Give ``dbname`` the owner and the database grants the postgresql role gives it.

    At schema ``version`` 8 or later the owner role owns it and ``app_role`` holds
    CONNECT and TEMPORARY by name; below, ``app_role`` owns it (its rights inside come
    through pg_database_owner). PUBLIC may neither connect nor make temporary tables.
    The grant comes after the owner change, which would fold it into the owner's.
    Returns the owner. The statements are idempotent.
    """
    owner = database_owner(version, app_role)
    if owner == AUDIT_OWNER:
        ensure_role(admin)
    db, app = sql.Identifier(dbname), sql.Identifier(app_role)
    for statement in (
        sql.SQL("ALTER DATABASE {} OWNER TO {}").format(db, sql.Identifier(owner)),
        sql.SQL("REVOKE CONNECT, TEMPORARY ON DATABASE {} FROM PUBLIC").format(db),
        sql.SQL("GRANT CONNECT, TEMPORARY ON DATABASE {} TO {}").format(db, app),
    ):
        admin.execute(statement)
    return owner
