"""Which keys of the key ring a backup set's sealed memory values need, and proof they open.

A Redis tier records in its manifest entry (``artifacts.redis.extra``) how many
sealed values name each key id::

    "key_ids": {"<key id>": <count>, ...}, "key_ids_from": "namespace dumps"

A namespace set counts them as its dumps pass through the export (exact: the
values the set holds). A whole set holds the server's RDB, which memops does not
parse: its key ids are counted on the live server right after the BGSAVE
(``key_ids_from: "live server after BGSAVE"``). No rotation runs in between
(``keys.rotate`` and ``backup.create`` both hold the stack lock); what can differ is
a value the application rewrites or deletes between the BGSAVE and the count.
The drill, which opens the restored copy, catches what that misses.

What it costs, measured on this project's 2-core machines (200,000 values of 300 to
550 bytes, half sealed, half plain JSON that Redis compresses): the count on the live
server takes about as long as BGSAVE, copy and ``redis-check-rdb`` together (1.2 to
1.7 s against 1.2 to 1.4 s); counting in the export adds about 2.5 µs a value (1.2 s
to 1.7 s). A bounded sample would be cheaper but misses a key that few values use,
exactly the values a late writer leaves after a rotation.

A manifest written before this record exists has no ``key_ids``: which keys its
values need is unknown (``recorded_key_ids`` is None), and ``keys.retire`` treats
such a set as one that may need any key.

``check_sealed`` is the drill's part: every value of the restored copy is read
for the key id it names; a value naming a key the ring lacks is counted as
missing, and up to ``per_key`` values of each key id the ring holds are opened.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from memops.backup.artifacts import TierArtifact
from memops.backup.manifest import Manifest
from memops.keys.ring import KeyRing
from memops.memory.redis_scan import DEFAULT_BATCH, scan_batch
from memops.memory.values import CORRUPT, UNDECRYPTABLE, inspect_value, key_id_of_value

if TYPE_CHECKING:
    import redis

KEY_IDS = "key_ids"
KEY_IDS_FROM = "key_ids_from"
KEY_IDS_DUMPS = "namespace dumps"
KEY_IDS_LIVE = "live server after BGSAVE"
PER_KEY = 100  # values of each key id the drill opens


def key_ids_extra(counts: Mapping[str, int], source: str) -> dict[str, Any]:
    """The manifest entry's fields: key id -> number of sealed values, and how it was read."""
    return {KEY_IDS: {k: int(n) for k, n in sorted(counts.items()) if n}, KEY_IDS_FROM: source}


def recorded_key_ids(artifact: TierArtifact) -> dict[str, int] | None:
    """The key ids a Redis artifact records; None when it records none (an older memops)."""
    found = artifact.extra.get(KEY_IDS)
    if not isinstance(found, dict):
        return None
    if not all(isinstance(k, str) and type(n) is int for k, n in found.items()):
        return None
    return dict(found)


@dataclass(frozen=True)
class SetsNeeding:
    """Of the sets in a store, those whose sealed values name a key, and those that cannot tell."""

    key_id: str
    needing: tuple[Manifest, ...]  # they record values sealed with the key
    unknown: tuple[Manifest, ...]  # a Redis tier without a record (taken by an older memops)

    @property
    def found(self) -> bool:
        return bool(self.needing or self.unknown)

    def to_dict(self) -> dict[str, Any]:
        """Set id -> values sealed with the key (sets that need it); sets that cannot tell."""
        counts = {}
        for manifest in self.needing:
            counts[manifest.set_id] = (recorded_key_ids(manifest.artifacts["redis"]) or {})[
                self.key_id
            ]
        return {"needing": counts, "unknown": [m.set_id for m in self.unknown]}


def sets_needing(manifests: Iterable[Manifest], key_id: str) -> SetsNeeding:
    needing, unknown = [], []
    for manifest in manifests:
        artifact = manifest.artifacts.get("redis")
        if artifact is None:
            continue
        recorded = recorded_key_ids(artifact)
        if recorded is None:
            unknown.append(manifest)
        elif recorded.get(key_id, 0) > 0:
            needing.append(manifest)
    return SetsNeeding(key_id, tuple(needing), tuple(unknown))


@dataclass
class SealedCheck:
    """What the drill found among the sealed values of a restored Redis copy."""

    key_ids: Counter[str] = field(default_factory=Counter)  # every sealed value, by key id
    opened: int = 0  # decrypted and checked, good
    missing: Counter[str] = field(default_factory=Counter)  # key id -> values no key opens
    corrupt: Counter[str] = field(default_factory=Counter)  # reason -> values that failed

    @property
    def ok(self) -> bool:
        return not self.missing

    def to_dict(self) -> dict[str, Any]:
        return {
            "key_ids": dict(sorted(self.key_ids.items())),
            "opened": self.opened,
            "missing": dict(sorted(self.missing.items())),
            "corrupt": dict(sorted(self.corrupt.items())),
        }

    def problem(self, ring_label: str) -> str:
        """One line naming the key ids no key of the ring opens ("" when there are none).

        ``ring_label`` ends "sealed values name key(s) …": "the key ring X does not hold".
        """
        if not self.missing:
            return ""
        named = ", ".join(f"{k} ({n:,} value(s))" for k, n in sorted(self.missing.items()))
        return f"sealed values name key(s) {ring_label}: {named}"


def check_sealed(
    client: redis.Redis, prefix: str, ring: KeyRing | None, *, per_key: int | None = None
) -> SealedCheck:
    """Read every value under ``prefix`` for its key id; open up to ``per_key`` of each key
    (default ``PER_KEY``)."""
    per_key = PER_KEY if per_key is None else per_key
    found = SealedCheck()
    opened_of: Counter[str] = Counter()
    cursor = 0
    while True:
        cursor, pairs = scan_batch(client, prefix, cursor, DEFAULT_BATCH)
        for key, raw in pairs:
            key_id = key_id_of_value(raw) if raw is not None else None
            if raw is None or key_id is None:
                continue
            found.key_ids[key_id] += 1
            if ring is None or ring.secret(key_id) is None:
                found.missing[key_id] += 1
                continue
            if opened_of[key_id] >= per_key:
                continue
            opened_of[key_id] += 1
            check = inspect_value(raw, key.decode("utf-8", "replace"), ring)
            if check.good:
                found.opened += 1
            elif check.verdict == UNDECRYPTABLE:
                found.missing[key_id] += 1
            elif check.verdict == CORRUPT:
                found.corrupt[check.reason] += 1
        if cursor == 0:
            return found
