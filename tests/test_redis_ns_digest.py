"""NamespaceDigest without a server: dedup per batch, and the checksum's definition."""

from __future__ import annotations

import hashlib
import struct

from memops.backup.redis.ns_export import FOOTER, Batch, NamespaceDigest
from memops.backup.redis.nsfile import encode_record

FOOTER_BYTES = b"\x0a\x00" + b"C" * 8  # u16 RDB version 10 | u64 CRC (not checked here)


def payload(value: bytes) -> bytes:
    return b"\x00" + value + FOOTER_BYTES


def defined_checksum(records: dict[bytes, bytes]) -> str:
    """The definition, spelt out: sum mod 2**256 of sha256(u32 key length | key | body)."""
    total = 0
    for key, dumped in records.items():
        body = struct.pack(">I", len(key)) + key + dumped[:-FOOTER]
        total += int.from_bytes(hashlib.sha256(body).digest(), "big")
    return (total % (1 << 256)).to_bytes(32, "big").hex()


def batch(*records: tuple[bytes, bytes]) -> Batch:
    return Batch.of((key, -1, dumped) for key, dumped in records)


def encoded(*records: tuple[bytes, bytes]) -> list[bytes]:
    return [encode_record(key, -1, dumped) for key, dumped in records]


def test_batches_of_new_keys_are_kept_whole_and_summed_as_defined() -> None:
    first = ((b"p:memory:a:fact:1", payload(b"one")), (b"p:memory:a:fact:2", payload(b"two")))
    second = ((b"p:memory:a:fact:3", payload(b"three")),)
    digest = NamespaceDigest("p", "a")
    assert digest.absorb(batch(*first)) == encoded(*first)
    assert digest.absorb(batch(*second)) == encoded(*second)
    assert (digest.count, digest.duplicates, digest.rdb_format) == (3, 0, "10")
    assert digest.checksum == defined_checksum(
        {
            b"p:memory:a:fact:1": payload(b"one"),
            b"p:memory:a:fact:2": payload(b"two"),
            b"p:memory:a:fact:3": payload(b"three"),
        }
    )


def test_a_key_scan_returned_again_is_dropped_from_file_and_checksum() -> None:
    digest = NamespaceDigest("p", "a")
    digest.absorb(batch((b"p:memory:a:fact:1", payload(b"one"))))
    # SCAN returned fact:1 again (changed meanwhile) and fact:2 twice in one step.
    again = batch(
        (b"p:memory:a:fact:1", payload(b"changed")),
        (b"p:memory:a:fact:2", payload(b"two")),
        (b"p:memory:a:fact:2", payload(b"two")),
    )
    assert digest.absorb(again) == encoded((b"p:memory:a:fact:2", payload(b"two")))
    assert (digest.count, digest.duplicates) == (2, 2)
    assert digest.checksum == defined_checksum(
        {b"p:memory:a:fact:1": payload(b"one"), b"p:memory:a:fact:2": payload(b"two")}
    )


def test_the_checksum_ignores_order_expiry_and_footer_but_not_content() -> None:
    records = [(b"k:%d" % i, payload(b"v%d" % i)) for i in range(50)]
    forward, backward = NamespaceDigest("", None), NamespaceDigest("", None)
    forward.absorb(batch(*records))
    backward.absorb(batch(*reversed(records[25:])))
    backward.absorb(batch(*reversed(records[:25])))
    assert forward.checksum == backward.checksum
    restored = NamespaceDigest("", None)
    restored.add([(key, 1_700_000_000_000, dumped[:-8] + b"X" * 8) for key, dumped in records])
    assert (restored.count, restored.checksum) == (50, forward.checksum)
    changed = NamespaceDigest("", None)
    changed.add(
        [(key, -1, payload(b"other")) for key, _ in records[:1]]
        + [(key, -1, dumped) for key, dumped in records[1:]]
    )
    assert changed.checksum != forward.checksum
