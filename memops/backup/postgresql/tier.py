"""PostgreSQL tier: the whole database as a zstd-compressed dump, tenants as COPY files.

Whole database (``memops.backup.postgresql.archive``): ``pg_dump -Fc -Z0 | zstd`` plus a
schema-only archive, both in one exported snapshot, in which the per-tenant
counts and checksums are read too. A whole restore loads into a NEW database,
checks its row counts and schema version, and only then swaps it in by
renames, so a failed or killed restore never leaves a half-restored live database.

Per tenant: a namespace set holds that tenant's ``memory_items`` and
``execution_audit_log`` rows in COPY text format, gzip-compressed, in files named
by ``tenant_token`` (never the tenant name); a tenant restore from a whole set
picks the tenant's rows out of the dump. The restore replaces the tenant's
``memory_items`` rows in one transaction (DELETE, never TRUNCATE), adds back only
its missing audit rows (the log is append-only), records its own audit event,
and commits only when the tenant's rows match the set's count and checksum.

A tenant's checksum is computed by the server, so that backup, restore and drill
read it the same way and cheaply: the sum of ``hash_record_extended`` (a 64-bit
hash of every column's value) over the tenant's ``memory_items`` rows, which
does not depend on the order the rows are read in.
"""

from __future__ import annotations

import contextlib
import contextvars
import gzip
import hashlib
import io
import json
import secrets
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from psycopg import sql

from memops import faults
from memops.audit import actor
from memops.backup.artifacts import (
    BackupError,
    RestoreRefused,
    ScratchCopy,
    TenantSummary,
    TierArtifact,
    tenant_token,
)
from memops.backup.manifest import FileRecord
from memops.backup.postgresql import archive as pg_archive
from memops.backup.postgresql import tools as pg_tools
from memops.backup.postgresql.copytext import copy_target, tenant_filter
from memops.backup.verify import register_checker
from memops.clients import postgres_connect
from memops.deploy.targets import PostgresTarget
from memops.quarantine import postgresql as postgres_quarantine
from memops.schema import migrate
from memops.schema import owner as audit_owner

TIER = "postgresql"
TABLES = ("memory_items", "execution_audit_log")


def check_pgdump(path: Path, record: FileRecord) -> None:
    """A dump is readable when ``zstd -d | pg_restore --list`` reads its table of contents.

    pg_restore stops reading after the table of contents; the whole stream is
    checked by verify's decompression check.
    """
    try:
        pg_archive.table_of_contents(path)
    except BackupError as exc:
        raise BackupError(f"{record.name}: {exc}") from exc


def check_pgschema(path: Path, record: FileRecord) -> None:
    """The schema archive is readable when ``pg_restore --list`` reads it."""
    pg_tools.run(["pg_restore", "--list", str(path)], what=f"{record.name}: pg_restore --list")


register_checker("pgdump", check_pgdump)
register_checker("pgschema", check_pgschema)

_SUMMARIES = """
SELECT tenant_id, count(*), coalesce(sum(hash_record_extended(m, 0)::numeric), 0)
FROM memory_items m {where} GROUP BY tenant_id
"""


def tenant_summaries(conn: Any, tenants: Sequence[str] | None = None) -> dict[str, TenantSummary]:
    """Count and checksum of each tenant's ``memory_items`` rows (all tenants, or those named).

    A named tenant without rows has count 0 and the checksum of no rows.
    """
    if tenants is None:
        rows = conn.execute(_SUMMARIES.format(where="")).fetchall()
    else:
        query = _SUMMARIES.format(where="WHERE tenant_id = ANY(%s)")
        rows = conn.execute(query, (list(tenants),)).fetchall()
    found = {tenant: _summary(count, total) for tenant, count, total in rows}
    for tenant in tenants or ():
        found.setdefault(tenant, _summary(0, 0))
    return found


def _summary(count: int, hash_sum: Any) -> TenantSummary:
    return TenantSummary(
        int(count), hashlib.sha256(f"{int(count)}:{int(hash_sum)}".encode()).hexdigest()
    )


# A standby has no WAL insert position of its own: the position it has replayed up to.
_POSITION_SQL = """
SELECT CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn()
            ELSE pg_current_wal_lsn() END::text
"""


class PostgresTier:
    """Backup and restore of one PostgreSQL database of the memory stack.

    ``admin`` is a superuser target on the same server, used to create, rename,
    hand over and drop databases and end sessions; it defaults to ``target``.
    ``owner`` is the application role (deployment ``app_user``), which memops' own
    login (``target.user``, the ops role) is a member of; it defaults to that login.
    A whole restore loads the new database as it, then gives the database and its
    objects the owners and grants the postgresql role gives them at the restored
    schema version (``audit_owner.secure`` and ``hand_over``): from 0008 on the
    NOLOGIN owner role owns the database and ``owner`` may connect to it.
    ``reader`` is where backups read (a healthy standby of a replicated tier); it defaults
    to ``target``, where everything else reads and writes.
    """

    def __init__(
        self,
        target: PostgresTarget,
        *,
        admin: PostgresTarget | None = None,
        owner: str = "",
        reader: PostgresTarget | None = None,
    ) -> None:
        self.target = target
        self.admin = admin or target
        self.owner = owner or target.user
        self.reader = reader or target

    @classmethod
    def from_deployment(
        cls,
        target: PostgresTarget,
        deployment: dict[str, Any],
        *,
        reader: PostgresTarget | None = None,
    ) -> PostgresTier:
        """The tier of a deployed cluster, administered as its superuser: over the network
        as the administration login where the role made one for memops on another machine
        (``admin_login``), else as postgres over the local socket (peer auth)."""
        socket_dir = deployment.get("socket_dir")
        owner = str(deployment.get("app_user") or "")
        login = deployment.get("admin_login") or {}
        if isinstance(login, dict) and login.get("user") and login.get("password"):
            remote = replace(target, user=str(login["user"]), password=str(login["password"]))
            return cls(target, admin=remote, owner=owner, reader=reader)
        if not socket_dir:
            return cls(target, owner=owner, reader=reader)
        admin = replace(
            target,
            host=str(socket_dir),
            port=int(deployment.get("port") or target.port),
            user=str(deployment.get("admin_user") or "postgres"),
            password=None,
            sslmode="disable",
        )
        return cls(target, admin=admin, owner=owner, reader=reader)

    def close(self) -> None:
        """Nothing stays open between calls."""

    def after_verified_set(self, artifact: TierArtifact) -> dict[str, Any]:
        """After a verified whole-database set: drop the databases earlier restores replaced.

        A whole restore keeps the database it replaced as ``<db>_pre_<set>_<random>`` until
        a newer verified set holds the live data; leftovers of a restore or a drill that died
        before its end (``<db>_restore_…``, ``<db>_drill_…``, never live) go too. The caller
        holds the stack lock, so no restore or drill is running. Namespace sets drop nothing.
        """
        if artifact.scope != "full":
            return {}
        db = self.target.dbname
        prefixes = [side_prefix(db, kind) for kind in SIDE_KINDS]
        with self._connect("postgres", admin=True) as conn:
            found = [
                name
                for (name,) in conn.execute(
                    "SELECT datname FROM pg_database WHERE datname <> %s "
                    "AND (SELECT bool_or(starts_with(datname, p)) FROM unnest(%s::text[]) p)",
                    (db, prefixes),
                ).fetchall()
            ]
            for name in found:
                conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
        if not found:
            return {}
        return {"dropped": found, "lines": [f"dropped {name}" for name in sorted(found)]}

    @contextlib.contextmanager
    def scratch_restore(self, staging: Path, artifact: TierArtifact) -> Iterator[ScratchCopy]:
        """The set's dump loaded into a scratch database (the drill), dropped afterwards."""
        name = side_database(self.target.dbname, "drill", time.strftime("%Y%m%dT%H%M%S"))
        started = time.monotonic()
        try:
            self.restore(staging, artifact, into=name)
            seconds = time.monotonic() - started
            with self._connect(name, admin=True) as conn:
                yield ScratchCopy(tenant_summaries(conn), seconds, connection=conn)
        finally:
            with self._connect("postgres", admin=True) as conn:
                conn.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
                )

    def _connect(
        self, dbname: str | None = None, *, admin: bool = False, read: bool = False, **kw: Any
    ) -> Any:
        base = self.admin if admin else self.reader if read else self.target
        return postgres_connect(replace(base, dbname=dbname or base.dbname), **kw)

    # ----------------------------------------------------------------- reading

    def _tenant_lines(self, conn: Any, table: str, tenant: str) -> list[bytes]:
        query = sql.SQL(
            "COPY (SELECT * FROM {} WHERE tenant_id = {} ORDER BY id) TO STDOUT"
        ).format(sql.Identifier(table), sql.Literal(tenant))
        buf = io.BytesIO()
        with conn.cursor() as cur, cur.copy(query) as copy:
            for chunk in copy:
                buf.write(chunk)
        return buf.getvalue().splitlines(keepends=True)

    def tenant_summaries(self, tenants: Sequence[str] | None = None) -> dict[str, TenantSummary]:
        """Per-tenant count and checksum of the live ``memory_items`` rows (as the backup)."""
        with self._connect() as conn:
            return tenant_summaries(conn, tenants)

    # ------------------------------------------------------------------ backup

    def backup(self, staging: Path, *, tenants: Sequence[str] | None = None) -> TierArtifact:
        """The whole database (``tenants`` None) or those tenants' rows, in one snapshot."""
        (staging / TIER).mkdir(parents=True, exist_ok=True)
        db = self.target.dbname
        files: list[str] = []
        kinds: dict[str, str] = {}
        with self._connect(read=True) as conn:
            conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            snapshot = conn.execute("SELECT pg_export_snapshot()").fetchone()[0]
            lsn = conn.execute(_POSITION_SQL).fetchone()[0]
            server = conn.execute("SHOW server_version").fetchone()[0]
            schema = migrate.current_version(conn)
            counts = {
                t: conn.execute(
                    sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(t))
                ).fetchone()[0]
                for t in TABLES
            }
            if tenants is None:
                # The dump runs beside this session's checksums, in the same snapshot.
                env = pg_tools.libpq_env(self.reader)
                with ThreadPoolExecutor(max_workers=1) as pool:
                    dumping = pool.submit(  # in this context: its progress shows
                        contextvars.copy_context().run,
                        pg_archive.dump,
                        env,
                        staging / _dump_name(db),
                        snapshot=snapshot,
                    )
                    pg_archive.dump_schema(env, staging / _schema_name(db), snapshot=snapshot)
                    summaries = tenant_summaries(conn)
                    dumping.result()
                for name, kind in ((_dump_name(db), "pgdump"), (_schema_name(db), "pgschema")):
                    files.append(name)
                    kinds[name] = kind
            else:
                summaries = tenant_summaries(conn, tenants)
                files = [n for t in tenants for n in self._write_tenant(conn, staging, t)]
            conn.execute("COMMIT")
        return TierArtifact(
            tier=TIER,
            files=tuple(files),
            tenants=summaries,
            versions={
                "postgresql": server,
                "pg_dump": pg_tools.tool_version("pg_dump"),
                "zstd": pg_tools.tool_version("zstd"),
                "schema": str(schema),
            },
            positions={"lsn": lsn, "snapshot": snapshot},
            scope="full" if tenants is None else "namespaces",
            extra={
                "dbname": db,
                "source": self.reader.endpoint,  # the standby (or primary) the set was read on
                "row_counts": counts,
                "tokens": {tenant_token(t): t for t in summaries},
            },
            kinds=kinds,
        )

    def _write_tenant(self, conn: Any, staging: Path, tenant: str) -> tuple[str, str]:
        """The tenant's rows of each table as a gzip-compressed COPY file; their names."""
        names = []
        for table in TABLES:
            name = f"{TIER}/{tenant_token(tenant)}.{table}.copy.gz"
            tmp = staging / f"{name}.tmp"
            with gzip.open(tmp, "wb", compresslevel=3) as out:
                out.writelines(self._tenant_lines(conn, table, tenant))
            tmp.replace(staging / name)
            names.append(name)
        return names[0], names[1]

    # ----------------------------------------------------------------- restore

    def restore(
        self,
        staging: Path,
        artifact: TierArtifact,
        *,
        tenants: Sequence[str] | None = None,
        into: str | None = None,
        drop_old: bool = False,
        set_id: str | None = None,
        quarantined: Sequence[str] | None = None,
    ) -> dict[str, Any]:
        """``quarantined``: the tenants a whole restore must leave hidden (quarantine.json);
        the restored database is made to hide exactly those before it is swapped in."""
        if tenants is not None:
            return {"tenants": {t: self._restore_tenant(staging, artifact, t) for t in tenants}}
        return self._restore_whole(
            staging,
            artifact,
            into=into,
            drop_old=drop_old,
            set_id=set_id,
            quarantined=quarantined,
        )

    def _restore_whole(
        self,
        staging: Path,
        artifact: TierArtifact,
        *,
        into: str | None,
        drop_old: bool,
        set_id: str | None,
        quarantined: Sequence[str] | None = None,
    ) -> dict[str, Any]:
        db = self.target.dbname
        dump = staging / _dump_name(artifact.extra["dbname"])
        if not dump.is_file():
            raise RestoreRefused(f"postgresql: the set has no whole-database dump ({dump.name})")
        if into == db:
            raise RestoreRefused(f"postgresql: {db!r} is the live database, not a scratch one")
        new = into or side_database(db, "restore", time.strftime("%Y%m%dT%H%M%S"))
        started = time.monotonic()
        with self._connect("postgres", admin=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(new)))
            # The application role owns it while it loads (pg_restore --role creates every
            # object as it); it is handed over before the swap. No session of the
            # application's (its owner's included) until the swap: the copy is not checked
            # yet, and its quarantine not applied. Superusers, as memops' admin is, are not
            # limited.
            conn.execute(
                sql.SQL("CREATE DATABASE {} OWNER {} CONNECTION LIMIT 0").format(
                    sql.Identifier(new), sql.Identifier(self.owner)
                )
            )
            # As the postgresql role leaves the live one: only the application role connects
            # (a new database lets PUBLIC connect).
            conn.execute(
                sql.SQL("REVOKE CONNECT, TEMPORARY ON DATABASE {} FROM PUBLIC").format(
                    sql.Identifier(new)
                )
            )
        try:
            self._load(staging, artifact, new)
            with self._connect(new, admin=True) as conn:
                # The load made the app role own every object, the audit log included.
                audit_owner.secure(conn, self.owner)
                version = migrate.current_version(conn)
            with self._connect("postgres", admin=True) as conn:
                # The owner and grants the postgresql role gives the live one at this
                # version: from 0008 on the app role no longer owns the database.
                audit_owner.hand_over(conn, new, self.owner, version)
            self._check_loaded(new, artifact)
            hidden = [] if into is not None else self._hide(new, quarantined)
        except BaseException:
            with self._connect("postgres", admin=True) as conn:
                conn.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(new))
                )
            raise
        report: dict[str, Any] = {"database": new, "load_s": time.monotonic() - started}
        if into is not None:
            with self._connect("postgres", admin=True) as conn:
                conn.execute(
                    sql.SQL("ALTER DATABASE {} CONNECTION LIMIT -1").format(sql.Identifier(new))
                )
            return report
        report["quarantine"] = hidden
        old = side_database(db, "pre", set_id or time.strftime("%Y%m%dT%H%M%S"))
        faults.point("postgresql.loaded")
        try:
            ended = self._swap(db, new, old)
        except BaseException:
            with contextlib.suppress(Exception), self._connect("postgres", admin=True) as conn:
                conn.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(new))
                )
            raise
        faults.point("postgresql.swapped")
        if drop_old:
            with self._connect("postgres", admin=True) as conn:
                conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(old)))
        report.update(sessions_terminated=int(ended), old_database=None if drop_old else old)
        report["total_s"] = time.monotonic() - started
        return report

    def _swap(self, db: str, new: str, old: str) -> int:
        """Rename ``db`` to ``old`` and ``new`` to ``db``: all of it, or nothing.

        New sessions are refused (ALLOW_CONNECTIONS false, committed: it must hold while
        the application's sessions are ended), then both renames and turning connections
        back on for ``old`` commit in one transaction. On any failure before that commit
        the live database is as it was and accepts connections again. Returns how many
        sessions were ended.
        """
        ident = sql.Identifier
        with self._connect("postgres", admin=True) as conn:
            limit = conn.execute(
                "SELECT datconnlimit FROM pg_database WHERE datname = %s", (db,)
            ).fetchone()[0]
            conn.execute(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS false").format(ident(db)))
            try:
                ended = _end_sessions(conn, db)
                with conn.transaction():
                    for statement in (
                        sql.SQL("ALTER DATABASE {} RENAME TO {}").format(ident(db), ident(old)),
                        sql.SQL("ALTER DATABASE {} RENAME TO {}").format(ident(new), ident(db)),
                        sql.SQL("ALTER DATABASE {} CONNECTION LIMIT {}").format(
                            ident(db), sql.Literal(int(limit))
                        ),
                        sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS true").format(ident(old)),
                    ):
                        conn.execute(statement)
            except BaseException as exc:
                _allow_connections_again(self, db, exc)
                raise
        return ended

    def _hide(self, dbname: str, quarantined: Sequence[str] | None) -> list[str]:
        """Make the restored ``dbname`` hide exactly ``quarantined`` and check that it can.

        The set carries the quarantine of its day; the record says what holds now. Done
        before the swap, so no quarantined tenant is ever visible in the live database,
        even when the restore is killed right after it. None: leave the set's as it is.
        """
        if quarantined is None:
            return []
        wanted = set(quarantined)
        with self._connect(dbname, admin=True) as conn:
            if not postgres_quarantine.row_security_on(conn):
                if wanted:
                    raise BackupError(
                        f"postgresql: the restored database cannot hide a tenant (no "
                        f"memory_quarantine, or row security off on memory_items) while "
                        f"{', '.join(map(repr, sorted(wanted)))} is quarantined: not swapped in"
                    )
                return []
            lines = []
            for tenant in sorted(wanted ^ postgres_quarantine.quarantined(conn)):
                postgres_quarantine.apply(conn, tenant, quarantine=tenant in wanted, actor=actor())
                verb = "hidden again" if tenant in wanted else "no longer hidden"
                lines.append(f"postgresql: {tenant!r} {verb} (quarantine.json)")
        return lines

    def _load(self, staging: Path, artifact: TierArtifact, dbname: str) -> None:
        schema = staging / _schema_name(artifact.extra["dbname"])
        pg_archive.load(
            staging / _dump_name(artifact.extra["dbname"]),
            schema if schema.is_file() else None,  # sets taken before it existed
            env=pg_tools.libpq_env(self.admin, dbname),
            connect=lambda: self._connect(dbname, admin=True),
            role=self.owner,
        )

    def _check_loaded(self, dbname: str, artifact: TierArtifact) -> None:
        with self._connect(dbname, admin=True) as conn:
            for table, expected in artifact.extra.get("row_counts", {}).items():
                got = conn.execute(
                    sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))
                ).fetchone()[0]
                if got != expected:
                    raise BackupError(
                        f"postgresql: restored {table} has {got} rows, the set records {expected}"
                    )
            version = migrate.current_version(conn)
        if str(version) != artifact.versions.get("schema", str(version)):
            raise BackupError(
                f"postgresql: restored schema version {version}, the set records "
                f"{artifact.versions.get('schema')}"
            )

    def _restore_tenant(self, staging: Path, artifact: TierArtifact, tenant: str) -> dict:
        want = artifact.tenants.get(tenant)
        if want is None:
            raise RestoreRefused(f"postgresql: tenant {tenant!r} is not in this set")
        items, audit = self._tenant_rows(staging, artifact, tenant)
        if len(items.lines) != want.count:
            raise RestoreRefused(
                f"postgresql: the set holds {len(items.lines)} rows of tenant {tenant!r}, "
                f"its manifest says {want.count}; nothing was changed"
            )
        with self._connect() as conn, conn.transaction():
            # The supersede FK is deferrable: check it once, at commit, for the whole tenant.
            conn.execute("SET CONSTRAINTS memory_items_superseded_by_fkey DEFERRED")
            deleted = conn.execute(
                "DELETE FROM memory_items WHERE tenant_id = %s", (tenant,)
            ).rowcount
            with conn.cursor() as cur, cur.copy(items.copy_into("memory_items")) as copy:
                copy.write(b"".join(items.lines))
            got = tenant_summaries(conn, [tenant])[tenant]
            if got != want:
                raise BackupError(  # the transaction rolls back: the live rows stay as they were
                    f"postgresql: tenant {tenant!r} restored as {got.count} rows that do not "
                    f"match the set's {want.count} (schema changed since?); nothing was changed"
                )
            conn.execute(
                "CREATE TEMP TABLE restore_audit (LIKE execution_audit_log) ON COMMIT DROP"
            )
            with conn.cursor() as cur, cur.copy(audit.copy_into("restore_audit")) as copy:
                copy.write(b"".join(audit.lines))
            added = conn.execute(
                "INSERT INTO execution_audit_log (id, at, actor, action, tenant_id, details) "
                "OVERRIDING SYSTEM VALUE SELECT r.id, r.at, r.actor, r.action, r.tenant_id, "
                "r.details FROM restore_audit r WHERE NOT EXISTS "
                "(SELECT 1 FROM execution_audit_log a WHERE a.id = r.id)"
            ).rowcount
            restored = len(items.lines)
            conn.execute(
                "INSERT INTO execution_audit_log (actor, action, tenant_id, details) "
                "VALUES ('memops-backup', 'backup.restore', %s, %s::jsonb)",
                (
                    tenant,
                    json.dumps(
                        {
                            "tier": TIER,
                            "rows_deleted": deleted,
                            "rows_restored": restored,
                            "audit_rows_added": added,
                        }
                    ),
                ),
            )
        return {"rows_deleted": deleted, "rows_restored": restored, "audit_rows_added": added}

    def _tenant_rows(
        self, staging: Path, artifact: TierArtifact, tenant: str
    ) -> tuple[TenantRows, TenantRows]:
        """The tenant's memory_items and audit rows: from its files, or picked out of the dump."""
        if artifact.scope != "full":
            token = tenant_token(tenant)
            found = {
                table: TenantRows(None, _read_gz(staging / f"{TIER}/{token}.{table}.copy.gz"))
                for table in TABLES
            }
            return found["memory_items"], found["execution_audit_log"]
        found = {table: TenantRows(None, []) for table in TABLES}
        with pg_archive.table_rows(staging / _dump_name(artifact.extra["dbname"])) as blocks:
            for statement, lines in blocks:
                table, columns = copy_target(statement)
                pick = tenant_filter(columns, tenant) if table in found else None
                kept = [line for line in lines if pick is not None and pick(line)]
                if pick is not None:
                    found[table] = TenantRows(columns, kept)
        return found["memory_items"], found["execution_audit_log"]


@dataclass(frozen=True)
class TenantRows:
    """One table's rows of a tenant as COPY text lines, and the columns they hold in order."""

    columns: list[str] | None  # None: every column, in the table's order
    lines: list[bytes]

    def copy_into(self, table: str) -> sql.Composed:
        if self.columns is None:
            return sql.SQL("COPY {} FROM STDIN").format(sql.Identifier(table))
        return sql.SQL("COPY {} ({}) FROM STDIN").format(
            sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, self.columns))
        )


SIDE_KINDS = ("pre", "restore", "drill")
_NAME_BYTES = 63  # PostgreSQL cuts longer identifiers: two names could become one
_TAIL_BYTES = 30  # "<tag up to 23>_<6 hex>": what makes each side database's name unique


def side_prefix(db: str, kind: str) -> str:
    """How every ``kind`` database beside ``db`` starts (``db`` cut to leave room for a tail)."""
    room = _NAME_BYTES - _TAIL_BYTES - len(f"_{kind}_")
    head = db.encode("utf-8")[:room].decode("utf-8", "ignore")
    return f"{head}_{kind}_"


def side_database(db: str, kind: str, tag: str) -> str:
    """A new name beside ``db`` that no database has: prefix, ``tag`` (a set id, a time),
    random. Within 63 bytes whatever ``db`` is, so it is never cut into another's name."""
    return f"{side_prefix(db, kind)}{tag[:23]}_{secrets.token_hex(3)}"


def _end_sessions(conn: Any, db: str) -> int:
    """Terminate every other session on ``db`` and wait (briefly) until they are gone."""
    ended = conn.execute(
        "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity "
        "WHERE datname = %s AND pid <> pg_backend_pid()",
        (db,),
    ).fetchone()[0]
    for _ in range(50):  # terminated backends leave asynchronously
        left = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (db,)
        ).fetchone()[0]
        if not left:
            break
        time.sleep(0.1)
    return int(ended)


def _allow_connections_again(tier: PostgresTier, db: str, cause: BaseException) -> None:
    """After a failed swap: the live database (still named ``db``) accepts connections.

    On a fresh connection, the one that failed may be gone. When even that fails, the
    error says what is left and what repairs it.
    """
    try:
        with tier._connect("postgres", admin=True) as conn:
            conn.execute(
                sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS true").format(sql.Identifier(db))
            )
    except Exception as exc:
        raise BackupError(
            f"postgresql: the swap failed ({cause}) and connections to {db!r} could not be "
            f"turned back on ({exc}); `invoke deploy --tags postgresql` turns them on"
        ) from None


def _read_gz(path: Path) -> list[bytes]:
    with gzip.open(path, "rb") as handle:
        return handle.read().splitlines(keepends=True)


def _dump_name(db: str) -> str:
    return f"{TIER}/{db}.dump.zst"


def _schema_name(db: str) -> str:
    return f"{TIER}/{db}.schema.dump"
