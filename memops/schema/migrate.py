"""Apply and revert the versioned SQL migrations in ``memops/schema/migrations``.

Each migration runs in its own transaction together with its bookkeeping row in
``schema_migrations``, so the recorded version is always the schema's real
version. A session-level advisory lock serializes runners: a second runner waits
for the first, then finds nothing left to do. The runner refuses to act when an
applied migration was edited after it was applied (checksum mismatch) or when
the database is at a version this code does not know.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

import psycopg
from psycopg import pq, sql

from memops.errors import Failed

MIGRATIONS_PACKAGE = "memops.schema.migrations"
# Fixed advisory-lock key ("memops migrate" as a bigint). Locks are per database.
LOCK_KEY = 0x6D656D6F70735F6D
DEFAULT_LOCK_TIMEOUT_S = 60.0

_FILE_RE = re.compile(r"^(?P<version>\d{4})_(?P<name>[a-z0-9_]+)\.(?P<direction>up|down)\.sql$")

_CREATE_TABLE = """
CREATE TABLE schema_migrations (
    version    integer     PRIMARY KEY,
    name       text        NOT NULL,
    checksum   text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


_GUARD_RE = re.compile(r"^-- memops: refuse-if-rows ([a-z_][a-z0-9_]*)\s*$", re.MULTILINE)


class _DataLossRefused(Exception):
    """A down migration would drop rows and data loss was not allowed."""


class MigrationError(Failed):
    """The migrations cannot be applied as asked; the message says why."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    up_sql: str = field(repr=False)
    down_sql: str = field(repr=False)

    @property
    def checksum(self) -> str:
        """sha256 of the ``up`` file (line endings normalized): what was applied."""
        return hashlib.sha256(self.up_sql.encode("utf-8")).hexdigest()

    @property
    def label(self) -> str:
        return f"{self.version:04d}_{self.name}"

    @property
    def guarded_tables(self) -> tuple[str, ...]:
        """Tables the down file drops that must be empty unless data loss is allowed.

        A down file names them in ``-- memops: refuse-if-rows TABLE`` lines; the
        runner checks them (``_refuse_data_loss``), so no file repeats the check.
        """
        return tuple(match.group(1) for match in _GUARD_RE.finditer(self.down_sql))


@dataclass(frozen=True)
class MigrationReport:
    changed: bool
    from_version: int
    to_version: int
    applied: list[int]
    reverted: list[int]
    dry_run: bool = False

    def as_dict(self) -> dict[str, Any]:
        result: dict[str, Any] = {
            "changed": self.changed,
            "from": self.from_version,
            "to": self.to_version,
            "applied": self.applied,
            "reverted": self.reverted,
        }
        if self.dry_run:
            result["dry_run"] = True
        return result


def discover(directory: str | Path | Traversable | None = None) -> list[Migration]:
    """Load migrations from ``directory`` (default: the packaged ones), by version.

    Versions must run 1, 2, 3, … without gaps and each needs both an up and a
    down file; anything else is a packaging mistake and raises MigrationError.
    """
    root: Traversable = (
        resources.files(MIGRATIONS_PACKAGE) if directory is None else _as_traversable(directory)
    )
    found: dict[int, dict[str, str]] = {}
    names: dict[int, str] = {}
    for entry in root.iterdir():
        match = _FILE_RE.match(entry.name)
        if match is None:
            if entry.name.endswith(".sql"):
                raise MigrationError(f"migration file with an unexpected name: {entry.name}")
            continue
        version = int(match["version"])
        if names.setdefault(version, match["name"]) != match["name"]:
            raise MigrationError(f"version {version:04d} is used by two different names")
        text = entry.read_text(encoding="utf-8").replace("\r\n", "\n")
        found.setdefault(version, {})[match["direction"]] = text

    migrations = []
    for expected, version in enumerate(sorted(found), start=1):
        if version != expected:
            raise MigrationError(f"migration versions have a gap: expected {expected:04d}")
        files = found[version]
        for direction in ("up", "down"):
            if direction not in files:
                raise MigrationError(
                    f"migration {version:04d}_{names[version]} has no {direction} file"
                )
        migrations.append(Migration(version, names[version], files["up"], files["down"]))
    return migrations


def latest_version(migrations: Sequence[Migration] | None = None) -> int:
    known = discover() if migrations is None else migrations
    return known[-1].version if known else 0


def current_version(conn: psycopg.Connection[Any]) -> int:
    """The schema version recorded in the database; 0 when never migrated."""
    with conn.transaction():
        if not _table_exists(conn):
            return 0
        row = conn.execute("SELECT coalesce(max(version), 0) FROM schema_migrations").fetchone()
    return int(row[0]) if row else 0


def migrate(
    conn: psycopg.Connection[Any],
    target: int | None = None,
    *,
    dry_run: bool = False,
    allow_data_loss: bool = False,
    migrations: Sequence[Migration] | None = None,
    lock_timeout_s: float = DEFAULT_LOCK_TIMEOUT_S,
) -> MigrationReport:
    """Bring the schema up or down to ``target`` (None: the latest known version).

    ``allow_data_loss`` lets down migrations drop tables that still hold rows;
    without it they refuse. ``dry_run`` reports the plan without changing
    anything (``changed`` then means "would change"). On failure, migrations
    before the failing one stay applied and MigrationError says which failed.
    """
    known = list(discover() if migrations is None else migrations)
    latest = known[-1].version if known else 0
    if target is None:
        target = latest
    if not 0 <= target <= latest:
        raise MigrationError(f"target version {target} is unknown: this code knows 0..{latest}")
    if conn.info.transaction_status != pq.TransactionStatus.IDLE:
        raise MigrationError("the connection must not be inside a transaction")

    _lock(conn, lock_timeout_s)
    try:
        with conn.transaction():
            exists = _table_exists(conn)
            if not exists and not dry_run:
                conn.execute(_CREATE_TABLE)
                exists = True
            applied = _applied(conn) if exists else {}
        current = _check_applied(applied, known)
        up, steps = _plan(known, current, target)
        if dry_run:
            versions = [m.version for m in steps]
            return MigrationReport(
                changed=bool(steps),
                from_version=current,
                to_version=target,
                applied=versions if up else [],
                reverted=[] if up else versions,
                dry_run=True,
            )
        done: list[int] = []
        for migration in steps:
            try:
                _run_step(conn, migration, up=up, allow_data_loss=allow_data_loss)
            except (psycopg.Error, _DataLossRefused) as exc:
                verb = "applying" if up else "reverting"
                why = _describe(exc) if isinstance(exc, psycopg.Error) else str(exc)
                raise MigrationError(
                    f"{verb} {migration.label} failed: {why}"
                    f" (already {'applied' if up else 'reverted'}: {done or 'none'})"
                ) from exc
            done.append(migration.version)
    finally:
        _unlock(conn)
    return MigrationReport(
        changed=bool(done),
        from_version=current,
        to_version=target,
        applied=done if up else [],
        reverted=[] if up else done,
    )


def _plan(known: Sequence[Migration], current: int, target: int) -> tuple[bool, list[Migration]]:
    """Direction (True = up) and the migrations to run, in the order to run them."""
    if target >= current:
        return True, [m for m in known if current < m.version <= target]
    return False, [m for m in reversed(known) if target < m.version <= current]


def _run_step(
    conn: psycopg.Connection[Any], migration: Migration, *, up: bool, allow_data_loss: bool
) -> None:
    with conn.transaction():
        if not up and not allow_data_loss:
            _refuse_data_loss(conn, migration.guarded_tables)
        # No parameters: psycopg sends the file as one simple query, so a file
        # may hold several statements (and DO blocks).
        conn.execute(migration.up_sql if up else migration.down_sql)
        if up:
            conn.execute(
                "INSERT INTO schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                (migration.version, migration.name, migration.checksum),
            )
        else:
            conn.execute("DELETE FROM schema_migrations WHERE version = %s", (migration.version,))


def _refuse_data_loss(conn: psycopg.Connection[Any], tables: Sequence[str]) -> None:
    for table in tables:
        query = sql.SQL("SELECT EXISTS (SELECT 1 FROM {})").format(sql.Identifier(table))
        row = conn.execute(query).fetchone()
        if row and row[0]:
            raise _DataLossRefused(
                f"refusing to drop {table}: it still holds rows "
                "(rerun with --allow-data-loss if destroying this data is intended)"
            )


def _check_applied(applied: dict[int, tuple[str, str]], known: Sequence[Migration]) -> int:
    """Validate what the database recorded against the code; return the current version."""
    by_version = {m.version: m for m in known}
    latest = known[-1].version if known else 0
    unknown = sorted(v for v in applied if v not in by_version)
    if unknown:
        raise MigrationError(
            f"the database is at schema version {max(applied)}, newer than this code knows"
            f" ({latest}); upgrade memops before migrating (unknown versions: {unknown})"
        )
    edited = [
        f"{by_version[v].label} (recorded {checksum[:12]}, file {by_version[v].checksum[:12]})"
        for v, (_name, checksum) in sorted(applied.items())
        if checksum != by_version[v].checksum
    ]
    if edited:
        raise MigrationError(
            "applied migrations were edited after they were applied: "
            + ", ".join(edited)
            + "; restore the original files and add a new migration instead"
        )
    current = max(applied, default=0)
    missing = [v for v in range(1, current + 1) if v not in applied]
    if missing:
        raise MigrationError(
            f"schema_migrations records version {current} but not {missing}; fix it by hand"
        )
    return current


def _applied(conn: psycopg.Connection[Any]) -> dict[int, tuple[str, str]]:
    rows = conn.execute("SELECT version, name, checksum FROM schema_migrations").fetchall()
    return {int(version): (name, checksum) for version, name, checksum in rows}


def _table_exists(conn: psycopg.Connection[Any]) -> bool:
    row = conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()
    return bool(row and row[0])


def _lock(conn: psycopg.Connection[Any], timeout_s: float) -> None:
    """Take the session-level advisory lock, waiting at most ``timeout_s``."""
    try:
        with conn.transaction():
            conn.execute(
                "SELECT set_config('lock_timeout', %s, true)", (f"{max(1, int(timeout_s * 1000))}",)
            )
            conn.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
    except psycopg.errors.LockNotAvailable:
        raise MigrationError(
            f"another migration runner held the lock for more than {timeout_s:g}s"
        ) from None


def _unlock(conn: psycopg.Connection[Any]) -> None:
    if conn.closed or conn.info.transaction_status != pq.TransactionStatus.IDLE:
        return  # a broken session releases its locks when it ends
    try:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))
    except psycopg.Error:
        pass  # never hide the error that brought us here; the lock dies with the session


def _describe(exc: psycopg.Error) -> str:
    diag = exc.diag
    message = diag.message_primary or str(exc).strip()
    return f"{message} (hint: {diag.message_hint})" if diag.message_hint else message


def _as_traversable(directory: str | Path | Traversable) -> Traversable:
    return Path(directory) if isinstance(directory, str) else directory
