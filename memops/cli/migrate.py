"""`python -m memops migrate`: bring the episodic-memory schema to a version.

Connection settings come from the environment only, so the password never
shows up in argv (``ps``) or in Ansible's task output:
``MEMOPS_PG_HOST``, ``MEMOPS_PG_PORT``, ``MEMOPS_PG_DBNAME``, ``MEMOPS_PG_USER``,
``MEMOPS_PG_PASSWORD``, ``MEMOPS_PG_SSLMODE`` (default ``prefer``).

Prints one JSON line (``changed``, ``from``, ``to``, ``applied``, ``reverted``)
for ``changed_when``; errors are one line on stderr and exit code 1.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Mapping
from typing import Any

import psycopg

from memops.clients import postgres_connect
from memops.deploy.targets import SSLMODES, PostgresTarget
from memops.errors import BadInput, error_line
from memops.schema.migrate import DEFAULT_LOCK_TIMEOUT_S, MigrationError, migrate

ENV_PREFIX = "MEMOPS_PG_"


class ConfigError(BadInput):
    """The MEMOPS_PG_* environment is incomplete or invalid."""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "migrate",
        help="apply or revert episodic-memory schema migrations",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--to",
        dest="target",
        type=_target,
        default=None,
        metavar="N|latest",
        help="schema version to end at (default: latest; 0 reverts everything)",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="print the plan without changing anything"
    )
    parser.add_argument(
        "--allow-data-loss",
        action="store_true",
        help="let down migrations drop tables that still hold rows",
    )
    parser.add_argument(
        "--lock-timeout",
        type=float,
        default=DEFAULT_LOCK_TIMEOUT_S,
        metavar="SECONDS",
        help="how long to wait for another runner (default: %(default)s)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    password = os.environ.get(ENV_PREFIX + "PASSWORD") or None
    try:
        target = target_from_env(os.environ)
        with postgres_connect(target, application_name="memops-migrate") as conn:
            report = migrate(
                conn,
                args.target,
                dry_run=args.dry_run,
                allow_data_loss=args.allow_data_loss,
                lock_timeout_s=args.lock_timeout,
            )
    except (ConfigError, MigrationError) as exc:
        return _fail(str(exc), password)
    except psycopg.Error as exc:
        return _fail(f"PostgreSQL: {exc}", password)
    print(json.dumps(report.as_dict()), flush=True)
    return 0


def target_from_env(env: Mapping[str, str]) -> PostgresTarget:
    """The database to migrate, from MEMOPS_PG_* variables."""
    params: dict[str, Any] = {}
    for key in ("host", "dbname", "user"):
        value = env.get(ENV_PREFIX + key.upper(), "")
        if not value:
            raise ConfigError(f"{ENV_PREFIX}{key.upper()} is not set")
        params[key] = value
    port = env.get(ENV_PREFIX + "PORT", "5432")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"{ENV_PREFIX}PORT is not a TCP port: {port!r}")
    sslmode = env.get(ENV_PREFIX + "SSLMODE", "") or "prefer"
    if sslmode not in SSLMODES:
        raise ConfigError(f"{ENV_PREFIX}SSLMODE must be one of {', '.join(SSLMODES)}")
    return PostgresTarget(
        name="migrate",
        port=int(port),
        sslmode=sslmode,
        password=env.get(ENV_PREFIX + "PASSWORD") or None,
        **params,
    )


def _target(text: str) -> int | None:
    if text == "latest":
        return None
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"expected a version number or 'latest', got {text!r}")
    return int(text)


def _fail(message: str, secret: str | None) -> int:
    # libpq does not echo passwords, but never bet a secret on it
    error_line("migrate", f"error: {message}", secrets=(secret,))
    return 1
