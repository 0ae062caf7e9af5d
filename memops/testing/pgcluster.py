"""A throwaway PostgreSQL 15 cluster (``pg_createcluster``) in a temporary directory.

Tests and benchmarks start one per suite on a port of their own, so concurrent
runs do not clash; it is dropped (data and configuration) when the context
ends, and one left over from an interrupted run is dropped before starting.
The superuser ``postgres`` reaches it over the socket (local trust, this
cluster only); an unprivileged application role logs in with a password over
TCP, as in production.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from memops.deploy.targets import PostgresTarget
from memops.schema import owner as audit_owner
from memops.schema.migrate import MigrationReport, migrate

PG_VERSION = "15"


class ClusterUnavailable(Exception):
    """This machine cannot run a throwaway cluster (no server tools, not root)."""


@dataclass
class ScratchCluster:
    name: str
    port: int
    socket_dir: Path
    password: str = field(repr=False)
    app_role: str
    db_prefix: str
    _databases: Iterator[int] = field(default_factory=lambda: itertools.count(1), repr=False)

    def admin(self, dbname: str = "postgres") -> psycopg.Connection[Any]:
        """Superuser connection over the socket (local trust, this cluster only)."""
        return psycopg.connect(
            host=str(self.socket_dir),
            port=self.port,
            user="postgres",
            dbname=dbname,
            autocommit=True,
        )

    def admin_target(self, dbname: str = "postgres") -> PostgresTarget:
        return PostgresTarget(
            name=f"{self.name}-admin",
            host=str(self.socket_dir),
            port=self.port,
            dbname=dbname,
            user="postgres",
        )

    def new_database(self) -> str:
        """Create an empty database owned by the app role; return its name.

        As the deploy creates it: ``migrate`` hands it to the owner role at version 8."""
        name = f"{self.db_prefix}_{next(self._databases)}"
        with self.admin() as conn:
            conn.execute(
                sql.SQL("CREATE DATABASE {} OWNER {}").format(
                    sql.Identifier(name), sql.Identifier(self.app_role)
                )
            )
        return name

    def app_params(self, dbname: str) -> dict[str, Any]:
        return {
            "host": "127.0.0.1",
            "port": self.port,
            "dbname": dbname,
            "user": self.app_role,
            "password": self.password,
            "sslmode": "disable",
        }

    def app_target(self, dbname: str) -> PostgresTarget:
        return PostgresTarget(name=self.name, **self.app_params(dbname))

    @property
    def ops_role(self) -> str:
        return f"{self.app_role}_ops"

    def ops_params(self, dbname: str) -> dict[str, Any]:
        """memops' own login, as the deploy makes it (``postgresql_ops_user``): BYPASSRLS,
        a member of the app role, so row security (a quarantine) never hides rows from it."""
        return {**self.app_params(dbname), "user": self.ops_role}

    def ops_target(self, dbname: str) -> PostgresTarget:
        return PostgresTarget(name=self.name, **self.ops_params(dbname))

    def connect(self, dbname: str, **kwargs: Any) -> psycopg.Connection[Any]:
        return psycopg.connect(**self.app_params(dbname), **kwargs)

    def migrate(
        self, conn: psycopg.Connection[Any], target: int | None = None, **kwargs: Any
    ) -> MigrationReport:
        """``memops.schema.migrate.migrate`` on an app-role connection, as the deploy runs it.

        The audit owner role is lent to the app role for the run only (migration
        0004 needs it), so the code under test runs with production privileges. The
        database gets the owner and grants the deploy gives it at the version reached
        (``audit_owner.hand_over``): before a migration below 0008, back to the app
        role, so that it keeps its rights while 0008 is reverted; after one to 0008 or
        later, to the owner role.
        """
        dbname = conn.info.dbname
        dry_run = bool(kwargs.get("dry_run"))
        with self.admin() as admin, audit_owner.lent(admin, self.app_role):
            if not dry_run and target is not None and target < audit_owner.DATABASE_OWNER_VERSION:
                audit_owner.hand_over(admin, dbname, self.app_role, target)
            report = migrate(conn, target, **kwargs)
            if not dry_run:
                audit_owner.hand_over(admin, dbname, self.app_role, report.to_version)
            return report

    def stop(self, mode: str = "immediate") -> None:
        _run(["pg_ctlcluster", PG_VERSION, self.name, "stop", "-m", mode])

    def start(self) -> None:
        _run(["pg_ctlcluster", PG_VERSION, self.name, "start"])


@contextlib.contextmanager
def scratch_cluster(
    name: str,
    port: int,
    *,
    app_role: str,
    db_prefix: str,
    settings: Sequence[str] = ("fsync=off",),
) -> Iterator[ScratchCluster]:
    """Create and start the cluster; drop it (and its directory) when the block ends.

    ``settings`` are extra ``name=value`` lines for postgresql.conf. Two checkouts that
    run the same suite at once set ``MEMOPS_SCRATCH_OFFSET`` (a small number) apart:
    it is added to the port and to the cluster's name.
    """
    if offset := int(os.environ.get("MEMOPS_SCRATCH_OFFSET", "0") or 0):
        name, port = f"{name}-o{offset}", port + offset
    if shutil.which("pg_createcluster") is None:
        raise ClusterUnavailable("PostgreSQL server tools (pg_createcluster) are not installed")
    if os.geteuid() != 0:
        raise ClusterUnavailable("creating a PostgreSQL cluster needs root here")
    _drop(name)  # left over from an interrupted run
    tmp = Path(tempfile.mkdtemp(prefix=f"{name}-"))
    owner = pwd.getpwnam("postgres")
    os.chown(tmp, owner.pw_uid, owner.pw_gid)
    try:
        _create(name, port, tmp, settings)
        cluster = ScratchCluster(
            name, port, tmp / "socket", secrets.token_urlsafe(18), app_role, db_prefix
        )
        with cluster.admin() as conn:
            conn.execute(
                sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                    sql.Identifier(app_role), sql.Literal(cluster.password)
                )
            )
            # memops' own login, as the deploy's postgresql role makes it
            conn.execute(
                sql.SQL("CREATE ROLE {} LOGIN BYPASSRLS PASSWORD {} IN ROLE {}").format(
                    sql.Identifier(cluster.ops_role),
                    sql.Literal(cluster.password),
                    sql.Identifier(app_role),
                )
            )
            audit_owner.ensure_role(conn)  # as the deploy's postgresql role does
        yield cluster
    finally:
        _drop(name)
        shutil.rmtree(tmp, ignore_errors=True)


def _create(name: str, port: int, tmp: Path, settings: Sequence[str]) -> None:
    command = [
        "pg_createcluster",
        PG_VERSION,
        name,
        "--port",
        str(port),
        "--datadir",
        str(tmp / "data"),
        "--socketdir",
        str(tmp / "socket"),
        "--logfile",
        str(tmp / "postgresql.log"),
        "--locale",
        "C.UTF-8",
        "--start-conf",
        "manual",
        "-o",
        "listen_addresses=localhost",
    ]
    for setting in settings:
        command += ["-o", setting]
    command += ["--", "--auth-local=trust", "--auth-host=scram-sha-256"]
    _run(command)
    _run(["pg_ctlcluster", PG_VERSION, name, "start"])


def _drop(name: str) -> None:
    if Path("/etc/postgresql", PG_VERSION, name).exists():
        _run(["pg_dropcluster", "--stop", PG_VERSION, name])


def _run(command: list[str]) -> None:
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{command[0]} failed ({done.returncode}): {done.stderr.strip()}")
