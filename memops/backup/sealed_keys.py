"""Which keys of the key ring the sealed memory values of a backup set need.

A Redis tier records in its manifest entry (``artifacts.redis.extra``) how many
sealed values name each key id::

    "key_ids": {"<key id>": <count>, ...}, "key_ids_from": "namespace dumps"

A namespace set counts them as its dumps pass through the export (exact: the
values the set holds). A whole set holds the server's RDB, which memops does not
parse: its key ids are counted on the live server right after the BGSAVE
(``key_ids_from: "live server after BGSAVE"``). No rotation runs in between
(``keys.rotate`` and ``backup.create`` both hold the stack lock); what can differ is
a value the application rewrites or deletes between the BGSAVE and the count.

A manifest written before this record exists has no ``key_ids``: which keys its
values need is unknown (``recorded_key_ids`` is None), and ``keys.retire`` treats
such a set as one that may need any key.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from memops.backup.artifacts import TierArtifact
from memops.backup.manifest import Manifest

KEY_IDS = "key_ids"
KEY_IDS_FROM = "key_ids_from"
KEY_IDS_DUMPS = "namespace dumps"
KEY_IDS_LIVE = "live server after BGSAVE"


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
