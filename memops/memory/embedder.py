"""A deterministic text embedder: feature hashing of words, no model, no download.

Good enough to tell a scripted scenario's facts apart by the words they share
with their questions, and the same on every machine and every run (hashes are
blake2b, not Python's salted ``hash``). Components are float32 values, so a
vector survives a round trip through ``real[]`` and Qdrant unchanged.
"""

from __future__ import annotations

import hashlib
import math
import re
import struct

DIM = 64
_WORD = re.compile(r"[^\W_]+", re.UNICODE)
_STOPWORDS = frozenset((
    "a", "an", "and", "are", "as", "at", "be", "by", "does", "do", "for", "from", "has",
    "have", "how", "in", "is", "it", "its", "of", "on", "or", "the", "this", "to", "was",
    "what", "when", "where", "which", "who", "why", "with",
))  # fmt: skip


def words(text: str) -> list[str]:
    return [w for w in _WORD.findall(text.lower()) if w not in _STOPWORDS]


def embed(text: str, dim: int = DIM) -> tuple[float, ...]:
    """A unit vector of ``dim`` float32 components; all zeros for a text of stop words only."""
    vector = [0.0] * dim
    for word in words(text):
        digest = hashlib.blake2b(word.encode("utf-8"), digest_size=8).digest()
        index = int.from_bytes(digest[:4], "big") % dim
        vector[index] += 1.0 if digest[4] & 1 else -1.0
    norm = math.sqrt(sum(x * x for x in vector))
    if norm == 0:
        return tuple(vector)
    return tuple(float32(x / norm) for x in vector)


def float32(value: float) -> float:
    """The float32 nearest to ``value``, as a Python float."""
    return struct.unpack("<f", struct.pack("<f", value))[0]
