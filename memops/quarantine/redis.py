"""Redis part of a quarantine: the app user's ACL key patterns, set live by the admin.

ACL SETUSER changes the user object every connection of that user checks on each
command, so connections that authenticated before the quarantine are refused from
their next command on. The role writes the same patterns into the secrets file
(lookup ``memops_quarantine``), so a restart or a re-deploy keeps them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from memops.errors import Failed
from memops.quarantine.redis_acl import BLANKS, allowed_patterns, base_patterns


class RedisQuarantineError(Failed):
    """The app user's ACL is not what memops can safely change."""


def key_rules(admin: Any, user: str) -> list[bytes]:
    """The user's key patterns as ACL GETUSER lists them (``~`` dropped)."""
    reply = _raw(admin, "ACL", "GETUSER", user)
    if reply is None:
        raise RedisQuarantineError(f"redis: no ACL user {user!r}")
    fields = reply if isinstance(reply, dict) else dict(zip(reply[::2], reply[1::2], strict=True))
    found = fields.get(b"keys", fields.get("keys", b""))
    keys: bytes = found.encode() if isinstance(found, str) else (found or b"")
    return sorted(rule[1:] for rule in keys.split(b" ") if rule.startswith(b"~"))


def _raw(admin: Any, *args: Any) -> Any:
    """The reply as Redis sent it: redis-py's ACL GETUSER parser decodes the patterns as text."""
    connection = admin.connection_pool.get_connection()
    try:
        connection.send_command(*args)
        return connection.read_response()
    finally:
        admin.connection_pool.release(connection)


def check_names(tenants: Sequence[str]) -> None:
    """Every name can be quarantined in Redis (NUL and blanks are merged, so fine)."""
    for tenant in tenants:
        if not tenant:
            raise RedisQuarantineError("an empty tenant name has no Redis namespace")


def plan(
    admin: Any, user: str, prefix: str, before: Sequence[str], after: Sequence[str]
) -> dict[str, Any]:
    """What the ACL is and will be; refuses an ACL memops did not write."""
    current = key_rules(admin, user)
    target = allowed_patterns(prefix, after)
    # ``target`` already: a run that recorded the change but was cut off before it ended
    if current not in (allowed_patterns(prefix, before), target):
        raise RedisQuarantineError(
            f"redis: the key patterns of ACL user {user!r} ({len(current)}) are not the ones "
            f"memops set for {len(before)} quarantined namespace(s): changed by hand? "
            "nothing changed"
        )
    return {
        "user": user,
        "patterns_before": len(current),
        "patterns_after": len(target),
        "restores_base": target == base_patterns(prefix),
        "_target": target,
    }


def apply(admin: Any, user: str, patterns: Sequence[bytes]) -> None:
    """Replace the user's key patterns (channels and commands untouched), then check."""
    if any(BLANKS.intersection(p) for p in patterns):
        raise RedisQuarantineError("redis: a key pattern with a blank byte")  # a bug
    admin.execute_command("ACL", "SETUSER", user, "resetkeys", *[b"~" + p for p in patterns])
    if key_rules(admin, user) != sorted(patterns):
        raise RedisQuarantineError(f"redis: ACL user {user!r} did not take the new key patterns")
