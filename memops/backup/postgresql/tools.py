"""Running the PostgreSQL client tools (pg_dump, pg_restore) and zstd for a target.

Connection settings reach the tools through libpq's environment variables and
the password through ``PGPASSWORD`` in the child's environment: never argv,
which any local user can read in ``ps``. Children die with the process that
started them (``PR_SET_PDEATHSIG``), so a killed backup or restore does not
leave a pg_restore writing on its own.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import subprocess
from collections.abc import Mapping
from typing import IO, Any

from memops.backup.artifacts import BackupError
from memops.deploy.targets import PostgresTarget
from memops.errors import one_line

_PR_SET_PDEATHSIG = 1


# libpq parameter -> the environment variable the client tools read for it
_LIBPQ_ENV = {
    "host": "PGHOST",
    "port": "PGPORT",
    "dbname": "PGDATABASE",
    "user": "PGUSER",
    "password": "PGPASSWORD",
    "sslmode": "PGSSLMODE",
}


def libpq_env(target: PostgresTarget, dbname: str | None = None) -> dict[str, str]:
    """The environment for a client tool connecting to ``target`` (or its ``dbname``)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    for name, value in target.libpq_params(dbname).items():
        if value:
            env[_LIBPQ_ENV[name]] = str(value)
    env.update(PGAPPNAME="memops-backup", PGCONNECT_TIMEOUT="10")
    return env


def require(tool: str) -> str:
    found = shutil.which(tool)
    if found is None:
        raise BackupError(f"{tool} is not installed on this host (the postgresql role installs it)")
    return found


def tool_version(tool: str) -> str:
    """``pg_dump (PostgreSQL) 15.8`` -> ``15.8``; ``*** Zstandard ... v1.5.4`` -> ``1.5.4``."""
    done = subprocess.run(
        [require(tool), "--version"], capture_output=True, text=True, check=False, timeout=30
    )
    words = (done.stdout or done.stderr).split()
    version = next((w for w in words if w.lstrip("v")[:1].isdigit()), "")
    return version.lstrip("v").rstrip(",")


def _die_with_parent() -> None:
    # Not Linux: no prctl, and children may outlive a killed parent.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def spawn(
    argv: list[str],
    *,
    env: Mapping[str, str] | None = None,
    stdin: Any = None,
    stdout: Any = None,
    stderr: IO[bytes] | int | None = subprocess.PIPE,
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [require(argv[0]), *argv[1:]],
        env=dict(env) if env is not None else None,
        stdin=stdin,
        stdout=stdout,
        stderr=stderr,
        preexec_fn=_die_with_parent,
    )


def run(argv: list[str], *, env: Mapping[str, str] | None = None, what: str) -> str:
    """Run a tool to completion; its stdout, or BackupError with its first error line."""
    proc = spawn(argv, env=env, stdout=subprocess.PIPE)
    out, err = proc.communicate()
    if proc.returncode != 0:
        raise BackupError(f"{what} failed: {failure_line(argv[0], proc.returncode, err)}")
    return out.decode("utf-8", "replace")


def failure_line(tool: str, returncode: int, stderr: bytes | None) -> str:
    """One line: the tool's first error message, or how it ended."""
    lines = [line for line in (stderr or b"").decode("utf-8", "replace").splitlines() if line]
    errors = [line for line in lines if "error" in line.lower() or "fatal" in line.lower()]
    if errors or lines:
        return one_line((errors or lines)[0])
    if returncode < 0:
        return f"{tool} was killed by signal {-returncode}"
    return f"{tool} exited with status {returncode}"
