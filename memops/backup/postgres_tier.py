"""PostgreSQL tier: a zstd-compressed custom-format dump, plus per-tenant COPY files.

Whole database: ``pg_dump -Fc -Z0 | zstd -T2`` (PostgreSQL 15's pg_dump has only
gzip, several times slower). A whole restore loads into a NEW database, checks
its row counts and schema version, and only then swaps it in by renames, so a
failed or killed restore never leaves a half-restored live database.

Per tenant: that tenant's ``memory_items`` and ``execution_audit_log`` rows in
COPY text format, gzip-compressed, in files named by ``tenant_token`` (never
the tenant name). A tenant restore replaces the tenant's ``memory_items`` rows
in one transaction (DELETE, never TRUNCATE) and adds back only its missing
audit rows (the log is append-only), then records its own audit event.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from psycopg import sql

from memops import migrate
from memops.backup import pg_tools
from memops.backup.artifacts import (
    BackupError,
    RestoreRefused,
    ScratchCopy,
    TenantSummary,
    TierArtifact,
    scratch_name,
    tenant_token,
)
from memops.backup.manifest import FileRecord
from memops.backup.verify import register_checker
from memops.clients import postgres_connect
from memops.targets import PostgresTarget

TIER = "postgresql"
TABLES = ("memory_items", "execution_audit_log")
ZSTD_LEVEL = 3  # measured: smaller than pg_dump -Fc's default gzip -6, several times faster
_EMPTY = hashlib.sha256(b"").hexdigest()


def check_pgdump(path: Path, record: FileRecord) -> None:
    """A dump is readable when ``zstd -d | pg_restore --list`` reads its table of contents."""
    zstd = pg_tools.spawn(["zstd", "-d", "-q", "-c", str(path)], stdout=subprocess.PIPE)
    try:
        lister = pg_tools.spawn(
            ["pg_restore", "--list"], stdin=zstd.stdout, stdout=subprocess.DEVNULL
        )
        assert zstd.stdout is not None
        zstd.stdout.close()
        _, err = lister.communicate()
    finally:
        zstd.wait()
    # pg_restore stops reading after the table of contents: zstd then ends on SIGPIPE,
    # and the whole stream is checked by verify's decompression check instead.
    if lister.returncode != 0 or zstd.returncode not in (0, -13):
        raise BackupError(
            f"{record.name}: pg_restore --list failed: "
            f"{pg_tools.failure_line('pg_restore', lister.returncode, err)}"
        )


register_checker("pgdump", check_pgdump)


def _summary(lines: list[bytes]) -> TenantSummary:
    digests = sorted(hashlib.sha256(line).hexdigest() for line in lines)
    return TenantSummary(len(lines), hashlib.sha256("".join(digests).encode()).hexdigest())


class PostgresTier:
    """Backup and restore of one PostgreSQL database of the memory stack.

    ``admin`` is a superuser (or database-owner with CREATEDB) target on the same
    server, used to create, rename and drop databases and end sessions; it
    defaults to ``target``.
    """

    def __init__(self, target: PostgresTarget, *, admin: PostgresTarget | None = None) -> None:
        self.target = target
        self.admin = admin or target

    @classmethod
    def from_deployment(cls, target: PostgresTarget, deployment: dict[str, Any]) -> PostgresTier:
        """The tier of a deployed cluster: its superuser over the local socket (peer auth)."""
        socket_dir = deployment.get("socket_dir")
        if not socket_dir:
            return cls(target)
        admin = replace(
            target,
            host=str(socket_dir),
            port=int(deployment.get("port") or target.port),
            user=str(deployment.get("admin_user") or "postgres"),
            password=None,
            sslmode="disable",
        )
        return cls(target, admin=admin)

    def close(self) -> None:
        """Nothing stays open between calls."""

    def after_verified_set(self, artifact: TierArtifact) -> dict[str, Any]:
        """After a verified whole-database set: drop the databases earlier restores replaced.

        A whole restore keeps the database it replaced as ``<db>_pre_<set>`` until a newer
        verified set holds the live data; leftovers of a restore that died before its swap
        (``<db>_restore_<time>``, never live) go too. Namespace sets drop nothing.
        """
        if artifact.scope != "full":
            return {}
        db = self.target.dbname
        with self._connect("postgres", admin=True) as conn:
            found = [
                name
                for (name,) in conn.execute(
                    "SELECT datname FROM pg_database "
                    "WHERE starts_with(datname, %s) OR starts_with(datname, %s)",
                    (f"{db}_pre_", f"{db}_restore_"),
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
        name = scratch_name(self.target.dbname)[-63:]
        started = time.monotonic()
        try:
            self.restore(staging, artifact, into=name)
            seconds = time.monotonic() - started
            with self._connect(name, admin=True) as conn:
                names = self._tenants(conn)
                summaries = {
                    t: _summary(self._tenant_lines(conn, "memory_items", t)) for t in names
                }
                yield ScratchCopy(summaries, seconds, connection=conn)
        finally:
            with self._connect("postgres", admin=True) as conn:
                conn.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
                )

    def _connect(self, dbname: str | None = None, *, admin: bool = False, **kw: Any) -> Any:
        base = self.admin if admin else self.target
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

    def _tenants(self, conn: Any) -> list[str]:
        rows = conn.execute("SELECT DISTINCT tenant_id FROM memory_items ORDER BY 1").fetchall()
        return [r[0] for r in rows]

    def tenant_summaries(self, tenants: Sequence[str] | None = None) -> dict[str, TenantSummary]:
        """Per-tenant count and checksum of the live ``memory_items`` rows (as the backup)."""
        with self._connect() as conn:
            names = self._tenants(conn) if tenants is None else list(tenants)
            return {t: _summary(self._tenant_lines(conn, "memory_items", t)) for t in names}

    # ------------------------------------------------------------------ backup

    def backup(self, staging: Path, *, tenants: Sequence[str] | None = None) -> TierArtifact:
        (staging / TIER).mkdir(parents=True, exist_ok=True)
        db = self.target.dbname
        files: list[str] = []
        kinds: dict[str, str] = {}
        with self._connect() as conn:
            lsn = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()[0]
            server = conn.execute("SHOW server_version").fetchone()[0]
            schema = migrate.current_version(conn)
            counts = {
                t: conn.execute(
                    sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(t))
                ).fetchone()[0]
                for t in TABLES
            }
            names = self._tenants(conn) if tenants is None else list(tenants)
            summaries: dict[str, TenantSummary] = {}
            for tenant in names:
                token = tenant_token(tenant)
                for table in TABLES:
                    lines = self._tenant_lines(conn, table, tenant)
                    name = f"{TIER}/{token}.{table}.copy.gz"
                    tmp = staging / f"{name}.tmp"
                    with gzip.open(tmp, "wb", compresslevel=3) as out:
                        out.writelines(lines)
                    tmp.replace(staging / name)
                    files.append(name)
                    if table == "memory_items":
                        summaries[tenant] = _summary(lines)
        if tenants is None:
            name = f"{TIER}/{db}.dump.zst"
            self._dump(staging / name)
            files.append(name)
            kinds[name] = "pgdump"
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
            positions={"lsn": lsn},
            scope="full" if tenants is None else "namespaces",
            extra={
                "dbname": db,
                "row_counts": counts,
                "tokens": {tenant_token(t): t for t in names},
            },
            kinds=kinds,
        )

    def _dump(self, path: Path) -> None:
        tmp = path.with_name(f".{path.name}.tmp")
        env = pg_tools.libpq_env(self.target)
        with open(tmp, "wb") as out:
            dump = pg_tools.spawn(["pg_dump", "-Fc", "-Z0"], env=env, stdout=subprocess.PIPE)
            zstd = pg_tools.spawn(
                ["zstd", "-T2", f"-{ZSTD_LEVEL}", "-q", "-c"], stdin=dump.stdout, stdout=out
            )
            assert dump.stdout is not None
            dump.stdout.close()
            _, zerr = zstd.communicate()
            derr = dump.stderr.read() if dump.stderr else b""
            dump.wait()
        if dump.returncode != 0 or zstd.returncode != 0:
            tmp.unlink(missing_ok=True)
            bad, rc, err = (
                ("pg_dump", dump.returncode, derr)
                if dump.returncode
                else ("zstd", zstd.returncode, zerr)
            )
            raise BackupError(f"postgresql: {bad} failed: {pg_tools.failure_line(bad, rc, err)}")
        tmp.replace(path)

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
    ) -> dict[str, Any]:
        if tenants is not None:
            return {"tenants": {t: self._restore_tenant(staging, artifact, t) for t in tenants}}
        return self._restore_whole(staging, artifact, into=into, drop_old=drop_old, set_id=set_id)

    def _restore_whole(
        self,
        staging: Path,
        artifact: TierArtifact,
        *,
        into: str | None,
        drop_old: bool,
        set_id: str | None,
    ) -> dict[str, Any]:
        db = self.target.dbname
        dump = staging / TIER / f"{artifact.extra['dbname']}.dump.zst"
        if not dump.is_file():
            raise RestoreRefused(f"postgresql: the set has no whole-database dump ({dump.name})")
        if into == db:
            raise RestoreRefused(f"postgresql: {db!r} is the live database, not a scratch one")
        new = into or f"{db}_restore_{int(time.time())}"
        started = time.monotonic()
        with self._connect("postgres", admin=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(new)))
            conn.execute(
                sql.SQL("CREATE DATABASE {} OWNER {}").format(
                    sql.Identifier(new), sql.Identifier(self.target.user)
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
            self._load(dump, new)
            self._check_loaded(new, artifact)
        except BaseException:
            with self._connect("postgres", admin=True) as conn:
                conn.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(new))
                )
            raise
        report: dict[str, Any] = {"database": new, "load_s": time.monotonic() - started}
        if into is not None:
            return report
        old = f"{db}_pre_{set_id or time.strftime('%Y%m%dT%H%M%S')}"[:63]
        with self._connect("postgres", admin=True) as conn:
            with conn.transaction():
                conn.execute(
                    sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS false").format(sql.Identifier(db))
                )
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
            conn.execute(
                sql.SQL("ALTER DATABASE {} RENAME TO {}").format(
                    sql.Identifier(db), sql.Identifier(old)
                )
            )
            conn.execute(
                sql.SQL("ALTER DATABASE {} RENAME TO {}").format(
                    sql.Identifier(new), sql.Identifier(db)
                )
            )
            conn.execute(
                sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS true").format(sql.Identifier(old))
            )
            if drop_old:
                conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(old)))
        report.update(sessions_terminated=int(ended), old_database=None if drop_old else old)
        report["total_s"] = time.monotonic() - started
        return report

    def _load(self, dump: Path, dbname: str) -> None:
        env = pg_tools.libpq_env(self.admin, dbname)
        zstd = pg_tools.spawn(["zstd", "-d", "-q", "-c", str(dump)], stdout=subprocess.PIPE)
        restore = pg_tools.spawn(
            [
                "pg_restore",
                "--exit-on-error",
                "--no-owner",
                "--role",
                self.target.user,
                "-d",
                dbname,
            ],
            env=env,
            stdin=zstd.stdout,
            stdout=subprocess.DEVNULL,
        )
        assert zstd.stdout is not None
        zstd.stdout.close()
        _, err = restore.communicate()
        zstd.wait()
        if restore.returncode != 0 or zstd.returncode != 0:
            raise BackupError(
                "postgresql: pg_restore failed: "
                + pg_tools.failure_line("pg_restore", restore.returncode, err)
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
        token = tenant_token(tenant)
        if token not in artifact.extra.get("tokens", {}):
            raise RestoreRefused(f"postgresql: tenant {tenant!r} is not in this set")

        def read(table: str) -> bytes:
            with gzip.open(staging / TIER / f"{token}.{table}.copy.gz", "rb") as handle:
                return handle.read()

        items, audit = read("memory_items"), read("execution_audit_log")
        with self._connect() as conn, conn.transaction():
            # The supersede FK is deferrable: check it once, at commit, for the whole tenant.
            conn.execute("SET CONSTRAINTS memory_items_superseded_by_fkey DEFERRED")
            deleted = conn.execute(
                "DELETE FROM memory_items WHERE tenant_id = %s", (tenant,)
            ).rowcount
            with conn.cursor() as cur, cur.copy("COPY memory_items FROM STDIN") as copy:
                copy.write(items)
            conn.execute(
                "CREATE TEMP TABLE restore_audit (LIKE execution_audit_log) ON COMMIT DROP"
            )
            with conn.cursor() as cur, cur.copy("COPY restore_audit FROM STDIN") as copy:
                copy.write(audit)
            added = conn.execute(
                "INSERT INTO execution_audit_log (id, at, actor, action, tenant_id, details) "
                "OVERRIDING SYSTEM VALUE SELECT r.id, r.at, r.actor, r.action, r.tenant_id, "
                "r.details FROM restore_audit r WHERE NOT EXISTS "
                "(SELECT 1 FROM execution_audit_log a WHERE a.id = r.id)"
            ).rowcount
            restored = len(items.splitlines())
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
