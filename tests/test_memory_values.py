"""Integrity of short-term memory values: the envelope, its checks, and re-sealing."""

from __future__ import annotations

import base64
import json
import os

import pytest

from memops.keys.ring import new_keyring
from memops.memory import values as mv
from memops.testing import workload as wl

KEY = "memops:memory:acme:session:0000000000aa"


@pytest.fixture
def ring():
    return new_keyring(bytes(range(32)))


def test_plain_value_is_good_and_gives_its_content() -> None:
    check = mv.inspect_value(mv.plain_value("hello", "2025-01-01T00:00:00+00:00"), KEY, None)
    assert check == mv.ValueCheck(mv.GOOD, content="hello")


def test_sealed_value_opens_only_under_its_own_key_name(ring) -> None:
    raw = mv.sealed_value(
        "secret words", "t", key_name=KEY, key_id=ring.active, secret=ring.active_secret
    )
    assert "secret words" not in raw
    check = mv.inspect_value(raw, KEY, ring)
    assert check.good and check.content == "secret words" and check.key_id == ring.active
    moved = mv.inspect_value(raw, KEY.replace("acme", "other"), ring)
    assert (moved.verdict, moved.reason) == (mv.CORRUPT, mv.TAG_MISMATCH)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"\xff\xfe", mv.NOT_JSON),
        ("{not json", mv.NOT_JSON),
        ("[1, 2]", mv.MISSING_FIELD),
        ('{"content": "x", "created_at": "t"}', mv.MISSING_FIELD),
        ('{"content": "x", "content_hash": "00", "created_at": "t"}', mv.HASH_MISMATCH),
    ],
)
def test_corrupt_plain_values_name_the_reason(raw, reason) -> None:
    check = mv.inspect_value(raw, KEY, None)
    assert (check.verdict, check.reason) == (mv.CORRUPT, reason)


def test_a_flipped_ciphertext_byte_fails_the_tag(ring) -> None:
    envelope = json.loads(
        mv.sealed_value("x" * 40, "t", key_name=KEY, key_id=ring.active, secret=ring.active_secret)
    )
    data = bytearray(base64.b64decode(envelope["ciphertext"]))
    data[3] ^= 0x01
    envelope["ciphertext"] = base64.b64encode(bytes(data)).decode()
    check = mv.inspect_value(json.dumps(envelope), KEY, ring)
    assert (check.verdict, check.reason, check.key_id) == (mv.CORRUPT, mv.TAG_MISMATCH, ring.active)


def test_a_key_the_ring_lacks_is_undecryptable_not_corrupt(ring) -> None:
    other = new_keyring()
    raw = mv.sealed_value("x", "t", key_name=KEY, key_id=other.active, secret=other.active_secret)
    check = mv.inspect_value(raw, KEY, ring)
    assert (check.verdict, check.reason, check.key_id) == (
        mv.UNDECRYPTABLE,
        mv.UNKNOWN_KEY,
        other.active,
    )
    assert mv.inspect_value(raw, KEY, None).reason == mv.NO_KEYRING
    assert mv.key_id_of_value(raw) == other.active


def _parsed_key_id(raw: bytes) -> str | None:
    """key_id_of_value the slow way: parse the UTF-8 JSON, read the envelope."""
    try:
        envelope = json.loads(raw.decode("utf-8"))
    except ValueError:
        return None
    key_id = envelope.get("key_id") if isinstance(envelope, dict) else None
    return key_id if isinstance(key_id, str) and "enc" in envelope else None


def test_key_id_of_value_reads_what_parsing_reads(ring) -> None:
    """A sealed value is read without parsing, the rest is parsed only when it may name a key."""
    sealed = mv.sealed_value("c", "t", key_name=KEY, key_id=ring.active, secret=ring.active_secret)
    escaped = mv.canonical_json({"enc": "x", "key_id": "abc", "zz": 1}).replace(
        "key_", "key\\u005f"
    )
    cases = [
        sealed,
        sealed.replace('"created_at":"t"', '"created_at":"t\\u00e9"'),  # escaped: parsed
        sealed.replace('"created_at":"t"', '"created_at":"t\u00e9"'),  # not ASCII: parsed
        sealed.replace('"}', '"\x01}'),  # not JSON
        sealed.replace('"enc"', '"ENC"'),
        escaped,
        mv.plain_value("c", "t"),
        '{"key_id":"a"}',
        '["enc","key_id"]',
        "not json",
        "",
    ]
    for text in cases:
        assert mv.key_id_of_value(text.encode()) == _parsed_key_id(text.encode()), text
        assert mv.key_id_of_value(text) == _parsed_key_id(text.encode()), text
    assert mv.key_id_of_value(sealed.encode()) == ring.active
    assert mv.key_id_of_value(escaped.encode()) == "abc"
    assert mv.key_id_of_value(sealed.encode("utf-16")) is None  # inspect_value reads UTF-8


def test_reseal_moves_a_value_to_the_active_key_and_keeps_its_content(ring) -> None:
    raw = mv.sealed_value("kept", "t0", key_name=KEY, key_id=ring.active, secret=ring.active_secret)
    assert mv.reseal(raw, KEY, ring) is None  # already under the active key
    rotated = ring.with_new_key()
    moved = mv.reseal(raw, KEY, rotated)
    assert moved is not None and mv.key_id_of_value(moved) == rotated.active
    check = mv.inspect_value(moved, KEY, rotated)
    assert check.good and check.content == "kept"
    assert json.loads(moved)["created_at"] == "t0"
    assert mv.reseal(mv.plain_value("p", "t"), KEY, rotated) is None
    assert mv.reseal("{broken", KEY, rotated) is None


def test_workload_seals_a_share_of_its_values_reproducibly(ring) -> None:
    first = wl.generate(7, keyring=ring, encrypted_share=0.5)
    assert first == wl.generate(7, keyring=ring, encrypted_share=0.5)
    sealed = [e for e in first.redis if e.key_id is not None]
    assert 0 < len(sealed) < len(first.redis)
    assert {e.key_id for e in sealed} == {ring.active}
    for entry in first.redis:
        check = mv.inspect_value(entry.value, entry.key, ring)
        assert check.good, (entry.key, check)
        assert check.key_id == entry.key_id
    # Without a key ring the keys, TTLs and contents are the same.
    plain = wl.generate(7)
    assert [(e.key, e.ttl) for e in plain.redis] == [(e.key, e.ttl) for e in first.redis]
    assert all(e.key_id is None for e in plain.redis)
    assert [mv.inspect_value(e.value, e.key, ring).content for e in first.redis] == [
        json.loads(e.value)["content"] for e in plain.redis
    ]
    assert plain.memory_items == first.memory_items


def test_nonces_never_repeat_across_draws_nor_in_a_forked_child() -> None:
    """Nonces come from one OS draw per thousand values: none repeats, not after a fork."""
    source = mv._NONCES
    seen = {source.take() for _ in range(5000)}  # several draws
    assert len(seen) == 5000 and all(len(n) == mv.NONCE_BYTES for n in seen)
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # the child's next nonces, sent to the parent
        os.close(read)
        os.write(write, b"".join(source.take() for _ in range(10)))
        os._exit(0)
    os.close(write)
    os.waitpid(child, 0)
    with os.fdopen(read, "rb") as pipe:
        theirs = pipe.read()
    ours = b"".join(source.take() for _ in range(10))
    assert len(theirs) == len(ours) and theirs != ours  # not a copy of the parent's buffer
