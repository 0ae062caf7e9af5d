"""PostgreSQL probe: SELECT 1, version, recovery state, replication lag, schema version."""

from __future__ import annotations

import time
from typing import Any

import psycopg
from psycopg import errors as pg_errors

from memops.clients import postgres_connect
from memops.deploy.targets import PostgresTarget
from memops.ha.patroni import PatroniError, cluster_members, leader_of
from memops.probes.errors import safe_message
from memops.probes.result import (
    AUTH_FAILED,
    CONNECT_REFUSED,
    DNS_ERROR,
    HOST_UNREACHABLE,
    NOT_READY,
    PATRONI_MEMBER_NOT_RUNNING,
    PATRONI_NO_LEADER,
    PATRONI_UNREACHABLE,
    REPLICATION_LAG_HIGH,
    SCHEMA_BEHIND,
    TIMEOUT,
    TLS_ERROR,
    UNEXPECTED_ERROR,
    ProbeResult,
    State,
    failure,
    from_findings,
)

_SERVER_SQL = """
SELECT current_setting('server_version'), pg_is_in_recovery()
"""
# On an idle primary the last replayed transaction gets old although the replica
# is fully caught up; equal receive/replay positions mean there is no lag.
_LAG_SQL = """
SELECT CASE WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0
            ELSE extract(epoch FROM now() - pg_last_xact_replay_timestamp())
       END
"""
_SCHEMA_TABLE_SQL = "SELECT to_regclass('schema_migrations') IS NOT NULL"
_SCHEMA_VERSION_SQL = "SELECT coalesce(max(version), 0) FROM schema_migrations"

# Substrings of libpq/psycopg messages, checked in order, for errors that carry
# no SQLSTATE (connection failures happen before the server can send one).
_MESSAGE_CODES = (
    ("password authentication failed", AUTH_FAILED),
    ("no pg_hba.conf entry", AUTH_FAILED),
    ("pg_hba.conf rejects", AUTH_FAILED),
    ("authentication failed", AUTH_FAILED),
    ("the database system is starting up", NOT_READY),
    ("the database system is shutting down", NOT_READY),
    ("the database system is not yet accepting connections", NOT_READY),
    ("failed to resolve host", DNS_ERROR),
    ("could not translate host name", DNS_ERROR),
    ("connection refused", CONNECT_REFUSED),
    ("no route to host", HOST_UNREACHABLE),
    ("network is unreachable", HOST_UNREACHABLE),
    ("timeout expired", TIMEOUT),
    ("timed out", TIMEOUT),
    ("ssl", TLS_ERROR),
    ("certificate", TLS_ERROR),
)


def probe_postgresql(target: PostgresTarget, timeout_s: float) -> ProbeResult:
    started = time.perf_counter()
    try:
        with postgres_connect(
            target,
            timeout_s=timeout_s,
            statement_timeout_s=timeout_s,  # no statement runs longer than the budget
            application_name="memops-probe",
        ) as conn:
            conn.execute("SELECT 1")
            server_version, in_recovery = _one_row(conn, _SERVER_SQL)
            lag = _one_row(conn, _LAG_SQL)[0] if in_recovery else None
            has_table = _one_row(conn, _SCHEMA_TABLE_SQL)[0]
            schema_version = int(_one_row(conn, _SCHEMA_VERSION_SQL)[0]) if has_table else 0
    except Exception as exc:
        code, message = _classify(exc)
        return failure(code, safe_message(message, target.secrets), started, select_1=False)

    details: dict[str, Any] = {
        "select_1": True,
        "server_version": server_version,
        "in_recovery": bool(in_recovery),
        "replication_lag_s": None if lag is None else round(float(lag), 1),
        "schema_version": schema_version,
        "expected_schema_version": target.expected_schema_version,
    }
    findings: dict[str, State] = {}
    if lag is not None and float(lag) > target.max_replication_lag_seconds:
        findings[REPLICATION_LAG_HIGH] = State.DEGRADED
    if schema_version < target.expected_schema_version:
        findings[SCHEMA_BEHIND] = State.DEGRADED
    if target.patroni_url:
        findings.update(_patroni_findings(target, timeout_s, details))
    return from_findings(findings, started, details)


def _patroni_findings(
    target: PostgresTarget, timeout_s: float, details: dict[str, Any]
) -> dict[str, State]:
    """This member's part as Patroni reports it (role, state, timeline, lag in bytes) into
    ``details``; soft findings when Patroni does not answer or the cluster has no leader."""
    try:
        members = cluster_members([target.patroni_url or ""], timeout_s=timeout_s)
    except PatroniError:
        details["patroni"] = None
        return {PATRONI_UNREACHABLE: State.DEGRADED}
    me = next((m for m in members if (m.host, m.port) == (target.host, target.port)), None)
    leader = leader_of(members)
    details["patroni"] = {
        "role": me.role if me else None,
        "state": me.state if me else None,
        "timeline": me.timeline if me else None,
        "lag_bytes": me.lag_bytes if me else None,
        "leader": leader.name if leader else None,
        "members": len(members),
    }
    findings: dict[str, State] = {}
    if leader is None:
        findings[PATRONI_NO_LEADER] = State.DEGRADED
    if me is None or not me.running:
        findings[PATRONI_MEMBER_NOT_RUNNING] = State.DEGRADED
    return findings


def _one_row(conn: psycopg.Connection[Any], sql: str) -> tuple[Any, ...]:
    row = conn.execute(sql).fetchone()
    if row is None:  # every query above returns exactly one row
        raise RuntimeError(f"query returned no row: {sql.strip()}")
    return row


def _classify(exc: Exception) -> tuple[str, str]:
    """(reason code, message) for an exception raised while talking to PostgreSQL."""
    if isinstance(exc, pg_errors.QueryCanceled):
        return TIMEOUT, "statement timed out"
    if isinstance(exc, pg_errors.InvalidPassword | pg_errors.InvalidAuthorizationSpecification):
        return AUTH_FAILED, str(exc)
    if isinstance(exc, pg_errors.CannotConnectNow):
        return NOT_READY, str(exc)
    if isinstance(exc, psycopg.OperationalError):
        text = str(exc)
        lowered = text.lower()
        for needle, code in _MESSAGE_CODES:
            if needle in lowered:
                return code, text
    return UNEXPECTED_ERROR, f"{type(exc).__name__}: {exc}"
