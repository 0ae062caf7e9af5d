"""memops' one error vocabulary, and the one line every command leaves on stderr.

Every error memops raises on purpose derives from ``MemopsError`` and is one of
two kinds, which the operation runner maps to an outcome in one place:

- ``Refused``: nothing was touched (bad input, a missing precondition); exit 2.
  ``BadInput`` is the refusal of an option or an inventory.
- ``Failed``: the action ran and failed; exit 1. The message says what is left.

Domain errors (``BackupError``, ``KeyRingError``, ``TargetsError``, …) subclass one
of them; an operation catches one only to add facts to its output. A client
library's error (Redis, PostgreSQL, Qdrant, the OS) becomes a ``Failed`` through
``client_failure``. Anything else is a bug: the runner reports it as an internal
error, still in one line.
"""

from __future__ import annotations

import sys

from memops.exitcodes import EXIT_BAD_INPUT, EXIT_FAILED


class MemopsError(Exception):
    """An error memops raises on purpose; its message is the line a user sees."""

    exit_code = EXIT_FAILED
    result = "failed"  # the audit line's result


class Refused(MemopsError):
    """Nothing was touched: exit 2 with this message."""

    exit_code = EXIT_BAD_INPUT
    result = "refused"


class BadInput(Refused):
    """An option, an environment variable or an inventory is wrong: exit 2."""

    result = "bad-input"


class Failed(MemopsError):
    """The action ran and failed: exit 1 with this message."""


# The client libraries of the stores, by top-level module, and the tier each serves.
_CLIENT_MODULES = {
    "redis": "redis",
    "psycopg": "postgresql",
    "qdrant_client": "qdrant",
    "httpx": "qdrant",
    "httpcore": "qdrant",
}


def client_failure(exc: BaseException, tier: str | None = None) -> Failed | None:
    """A store client's or the OS's error as a one-line ``Failed``; None for anything else.

    The line is ``<tier>: <first line of the error>``; ``tier`` defaults to the
    store the client library serves.
    """
    library = _CLIENT_MODULES.get(type(exc).__module__.split(".")[0])
    if library is None and not isinstance(exc, OSError):
        return None
    text = str(exc).strip()
    first = text.splitlines()[0] if text else type(exc).__name__
    name = tier or library
    return Failed(f"{name}: {first}" if name else first)


def store_failure(exc: BaseException, tier: str) -> Failed:
    """``client_failure`` for an error known to come from ``tier``'s client."""
    return client_failure(exc, tier) or Failed(f"{tier}: {exc}")


def one_line(text: str) -> str:
    """Fold a multi-line message (libpq's, Ansible's) into one line."""
    return " ".join(text.split())


def error_line(command: str, message: str, *, secrets: tuple[str | None, ...] = ()) -> None:
    """Print ``memops COMMAND: message`` on stderr, with any of ``secrets`` masked."""
    for secret in secrets:
        if secret:
            message = message.replace(secret, "********")
    print(f"memops {command}: {one_line(message)}", file=sys.stderr, flush=True)
