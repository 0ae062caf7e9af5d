"""Walking the short-term memory values of a Redis server in batches.

Every value key is ``{prefix}:memory:{tenant}:{type}:{id}``; SCAN with the
(glob-escaped) pattern ``{prefix}:memory:*`` and ``TYPE string`` finds them
without blocking the server, MGET reads a batch in one round trip. SCAN may
return a key twice and misses nothing that exists from start to end, which is
all a rotation or a count needs.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

from memops.memory.values import key_id_of_value
from memops.model import memory_pattern
from memops.progress import meter

if TYPE_CHECKING:
    import redis

DEFAULT_BATCH = 500
NOT_SEALED = ""  # the tally of plain values (and of anything that names no key)

# A value: (key as Redis holds it, its bytes, or None when it went between SCAN and MGET).
Pair = tuple[bytes, bytes | None]


def scan_batch(client: redis.Redis, prefix: str, cursor: int, batch: int) -> tuple[int, list[Pair]]:
    """One SCAN step from ``cursor`` and the values of its keys; cursor 0 means: done."""
    cursor, keys = client.scan(cursor, match=memory_pattern(prefix), count=batch, _type="string")
    values = client.mget(keys) if keys else []
    return int(cursor), list(zip(keys, values, strict=True))  # type: ignore[arg-type]  # bytes


def key_id_counts(client: redis.Redis, prefix: str, batch: int = DEFAULT_BATCH) -> Counter[str]:
    """How many values name each key id (``NOT_SEALED`` for the rest); nothing is decrypted."""
    counts: Counter[str] = Counter()
    cursor = 0
    with meter().count(f"count values {memory_pattern(prefix)}", "keys") as counter:
        while True:
            cursor, pairs = scan_batch(client, prefix, cursor, batch)
            found = [raw for _key, raw in pairs if raw is not None]
            counts.update(key_id_of_value(raw) or NOT_SEALED for raw in found)
            counter.advance(len(found))
            if cursor == 0:
                return counts
