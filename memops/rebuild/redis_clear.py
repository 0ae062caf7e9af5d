"""Clear one Redis namespace with a server-side script: SCAN + exact check + UNLINK per call.

``rebuild.hard`` empties ``{prefix}:memory:{tenant}:*`` before restoring it. Each
EVALSHA runs SCAN steps (MATCH on the escaped ``namespace_pattern``) inside the
server, keeps only the keys of exactly this namespace (the Lua test of
``key_in_namespace``: MATCH alone also takes ``acme:eu``'s keys for ``acme``) and
UNLINKs them, until it has looked at ``max_keys`` keys or spent ``budget_ms``;
then it hands the cursor back. The keys never travel to the client, and a
concurrent client waits at most one call. Redis 7 replicates the script's
effects (the UNLINKs), which is what lets a script write after SCAN.

One call needs the previous call's cursor, so calls cannot be pipelined; a call
does enough work (thousands of keys) that the round trip is a small share.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from memops.errors import Failed
from memops.model import namespace_head, namespace_pattern
from memops.progress import meter

if TYPE_CHECKING:
    import redis

SCAN_COUNT = (
    200  # measured: 200 beat 1000 and 5000 on time and on PING p99 (benchmarks/redis_clear.py)
)
MAX_KEYS_PER_CALL = 20_000
BUDGET_MS = 4.0

# ARGV: cursor, MATCH pattern, COUNT, namespace head ``{prefix}:memory:{tenant}:``,
# max keys looked at, time budget (µs), 1 = UNLINK / 0 = count only.
# Returns {cursor, keys MATCH returned, keys of the namespace, keys unlinked}.
_CLEAR = """
local cursor, match, count, head = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local max_keys, budget_us, apply = tonumber(ARGV[5]), tonumber(ARGV[6]), ARGV[7] == '1'
local hlen, sub, find = #head, string.sub, string.find
local now = redis.call('TIME')
local deadline = now[1] * 1000000 + now[2] + budget_us
local seen, members, removed = 0, 0, 0
while true do
  local reply = redis.call('SCAN', cursor, 'MATCH', match, 'COUNT', count)
  cursor = reply[1]
  local keys = reply[2]
  local batch, n = {}, 0
  for i = 1, #keys do
    local key = keys[i]
    if sub(key, 1, hlen) == head and find(key, '^[^:]+:[^:]+$', hlen + 1) then
      n = n + 1
      batch[n] = key
      if n == 1000 then
        members = members + n
        if apply then removed = removed + redis.call('UNLINK', unpack(batch)) end
        batch, n = {}, 0
      end
    end
  end
  seen = seen + #keys
  members = members + n
  if apply and n > 0 then removed = removed + redis.call('UNLINK', unpack(batch)) end
  if cursor == '0' or seen >= max_keys then break end
  now = redis.call('TIME')
  if now[1] * 1000000 + now[2] >= deadline then break end
end
return {cursor, seen, members, removed}
"""


class ClearError(Failed):
    """The server refused the clear script (too old, scripts denied by ACL, …)."""


@dataclass(frozen=True)
class ClearResult:
    """What a clear (or its dry run) found: counts, never keys."""

    tenant: str
    members: int  # keys of exactly this namespace met by SCAN (may count a key twice)
    unlinked: int  # keys UNLINK removed (0 on a dry run)
    neighbours: int  # keys MATCH took that belong to another namespace (``acme:eu``)
    calls: int
    dry_run: bool


def clear_namespace(
    client: redis.Redis,
    prefix: str,
    tenant: str,
    *,
    dry_run: bool = False,
    count: int = SCAN_COUNT,
    max_keys: int = MAX_KEYS_PER_CALL,
    budget_ms: float = BUDGET_MS,
) -> ClearResult:
    """UNLINK every key ``{prefix}:memory:{tenant}:{type}:{id}``; nothing else is touched.

    ``dry_run`` runs the same scan and counts the keys that would go (``members``)
    without removing any. Keys written into the namespace while the clear runs may
    survive it (SCAN guarantees only keys present from start to end); the caller
    holds the stack lock and quarantines the namespace when that matters. A key
    SCAN returns twice counts twice in ``members`` but once in ``unlinked``.
    """
    import redis as redis_lib

    if count < 1 or max_keys < 1 or budget_ms <= 0:
        raise ValueError("count, max_keys and budget_ms must be positive")
    script = client.register_script(_CLEAR)
    head = namespace_head(prefix, tenant)
    fixed = (
        namespace_pattern(prefix, tenant),
        count,
        head,
        max_keys,
        round(budget_ms * 1000),
        0 if dry_run else 1,
    )
    cursor: bytes | str = b"0"
    members = unlinked = seen = calls = 0
    what = "redis count" if dry_run else "redis clear"
    with meter().count(f"{what} {tenant!r}", "keys") as counter:
        while True:
            try:
                reply = script(args=(cursor, *fixed))
            except redis_lib.ResponseError as exc:
                raise ClearError(f"redis clear of {tenant!r}: the server refused: {exc}") from None
            cursor, step_seen, step_members, step_unlinked = reply
            calls += 1
            seen += int(step_seen)
            members += int(step_members)
            unlinked += int(step_unlinked)
            counter.update(members if dry_run else unlinked)
            if cursor in (b"0", "0"):
                break
    return ClearResult(tenant, members, unlinked, seen - members, calls, dry_run)
