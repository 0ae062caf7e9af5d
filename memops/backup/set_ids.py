"""Backup set ids: generated from the UTC time (so they sort by time), checked on input.

A set id becomes a directory name or an S3 key prefix, so user input is held to
a strict alphabet before it reaches a path: no ``/``, no ``..``, nothing empty.
"""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime

from memops.backup.artifacts import BackupError
from memops.errors import BadInput

_TIME_FORMAT = "%Y%m%dT%H%M%SZ"
_GENERATED = re.compile(r"(\d{8}T\d{6}Z)-[0-9a-f]{4,}")
# fullmatch, never match with "$": "$" also matches before a trailing newline
_ALLOWED = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,63}")


class InvalidSetId(BadInput, BackupError, ValueError):
    """A set id given by a user (or found in a store) that cannot name a set."""


def new_set_id(now: datetime | None = None) -> str:
    """``20261202T081500Z-3f9a``: the UTC time, then a random suffix against collisions."""
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    return f"{moment.strftime(_TIME_FORMAT)}-{secrets.token_hex(2)}"


def check_set_id(set_id: str) -> str:
    """``set_id`` itself when it can name a set; else InvalidSetId naming it."""
    if not isinstance(set_id, str) or not _ALLOWED.fullmatch(set_id):
        raise InvalidSetId(
            f"invalid backup set id {set_id!r}: expected letters, digits and '-' "
            "(up to 64, e.g. 20261202T081500Z-3f9a)"
        )
    return set_id


def is_set_id(name: str) -> bool:
    return bool(_ALLOWED.fullmatch(name))


def set_id_time(set_id: str) -> datetime | None:
    """When a generated set id was made (UTC), or None for an id of another shape."""
    found = _GENERATED.fullmatch(set_id)
    if not found:
        return None
    return datetime.strptime(found.group(1), _TIME_FORMAT).replace(tzinfo=UTC)
