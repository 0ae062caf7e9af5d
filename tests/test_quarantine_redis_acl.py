"""The quarantine's Redis ACL key patterns, checked by a real redis-server.

What these tests prove: with some namespaces quarantined, the app user's patterns
(loaded from a config file line, as the role writes them, and set live with ACL
SETUSER) let Redis allow exactly the keys the reference predicate allows: every key
of a quarantined namespace is refused, every well-formed key of another namespace
(``acme:eu`` next to ``acme``, the workload's hostile names) stays reachable, and
the same holds for every short string over an alphabet of the tricky bytes.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest
import redis

from memops.backup.redis.scratch import ScratchRedis
from memops.clients import redis_client
from memops.quarantine.redis_acl import allowed_patterns, config_token, key_allowed
from memops.testing import workload as wl

pytestmark = pytest.mark.integration

PREFIX = "memops"
PORT = 31701
TYPES = ("chat", "fact", "eu", "x*", "sp ace")
# quarantined sets: a prefix of another tenant, its extension, both, and the hostile ones
QUARANTINES = [
    ("acme",),
    ("acme:eu",),
    ("acme", "acme:eu"),
    tuple(wl.NASTY_TENANTS[:12]),
]
ALPHABET = [b"a", b"e", b"u", b":", b" ", b"\t", b"*", b"\\", b"]", b"-", b"\xc3"]


def sample_keys() -> list[bytes]:
    keys = {
        wl.redis_key(PREFIX, tenant, type_, id_).encode()
        for tenant in (*wl.NASTY_TENANTS, "acme:eu:x", "acm", "acmf", "with\tspace")
        for type_ in TYPES
        for id_ in ("1", "a]b")
    }
    for base in (b"memops:memory:acme", b"memops:memory:", b"memops:memory:acme:eu"):
        for length in range(4):
            keys |= {base + b"".join(p) for p in itertools.product(ALPHABET, repeat=length)}
    keys |= {b"memops:", b"memops:other", b"other:memory:acme:chat:1", b"memops"}
    return sorted(keys)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ScratchRedis]:
    lines = []
    for number, tenants in enumerate(QUARANTINES):
        rules = " ".join(config_token(b"~" + p) for p in allowed_patterns(PREFIX, tenants))
        lines.append(f"user file{number} on nopass {rules} +@all")
    scratch = ScratchRedis(
        PORT, tmp_path_factory.mktemp("acl"), password="admin-secret", config=lines
    )
    scratch.start()
    yield scratch
    scratch.stop()


@pytest.fixture
def admin(server: ScratchRedis) -> Iterator[redis.Redis]:
    client = redis_client(server.target)
    yield client
    client.close()


def denied_by_redis(admin: redis.Redis, user: str, keys: list[bytes]) -> set[bytes]:
    pipe = admin.pipeline(transaction=False)
    for key in keys:
        pipe.execute_command("ACL", "DRYRUN", user, "GET", key)
    return {key for key, answer in zip(keys, pipe.execute(), strict=True) if answer != b"OK"}


@pytest.mark.parametrize("number", range(len(QUARANTINES)))
def test_config_file_patterns_allow_exactly_the_reference(admin: redis.Redis, number: int) -> None:
    tenants = QUARANTINES[number]
    keys = sample_keys()
    expected = {key for key in keys if not key_allowed(key, PREFIX, tenants)}

    assert denied_by_redis(admin, f"file{number}", keys) == expected
    for tenant in tenants:  # every key of a quarantined namespace is refused
        assert {
            k for k in keys if wl.key_in_namespace(k.decode(errors="replace"), PREFIX, tenant)
        } <= expected


def test_live_setuser_matches_the_config_file(admin: redis.Redis) -> None:
    tenants = QUARANTINES[-1]
    patterns = allowed_patterns(PREFIX, tenants)
    admin.execute_command(
        "ACL",
        "SETUSER",
        "live",
        "on",
        "nopass",
        "resetkeys",
        *[b"~" + p for p in patterns],
        "+@all",
    )
    keys = sample_keys()

    assert denied_by_redis(admin, "live", keys) == denied_by_redis(admin, "file3", keys)


def test_other_namespaces_stay_reachable(admin: redis.Redis) -> None:
    keys = sample_keys()
    denied = denied_by_redis(admin, "file2", keys)  # acme and acme:eu quarantined
    reachable = [
        wl.redis_key(PREFIX, tenant, type_, "1").encode()
        for tenant in ("acm", "acmf", "acme:eu:x", "ACME", "with space")
        for type_ in TYPES
    ]
    assert reachable and not denied.intersection(reachable)
    assert wl.redis_key(PREFIX, "acme:eu:x", "chat", "1").encode() not in denied
    assert wl.redis_key(PREFIX, "acme", "chat", "1").encode() in denied
    assert wl.redis_key(PREFIX, "acme:eu", "chat", "1").encode() in denied
