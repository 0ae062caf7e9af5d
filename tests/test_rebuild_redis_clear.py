"""The hard-rebuild clear of one Redis namespace, against a real redis-server.

Every other key is compared by DUMP payload and absolute expiry (PEXPIRETIME)
before and after, so a wider match or a touched TTL fails the test.
"""

from __future__ import annotations

import io
from collections.abc import Iterator

import pytest

from memops.backup.redis.scratch import ScratchRedis
from memops.backup.scratch import free_port
from memops.clients import redis_client
from memops.progress import LineMeter, reporting
from memops.rebuild.redis_clear import clear_namespace
from memops.testing import workload as wl

pytestmark = pytest.mark.integration

PREFIX = wl.DEFAULT_PREFIX
# Keys MATCH takes for "acme" that are not acme's: another tenant's, or not key-shaped.
ACME_LOOKALIKES = (
    "memops:memory:acme:eu:session:1",
    "memops:memory:acme:session",  # no id
    "memops:memory:acme:session:1:extra",  # tenant "acme:session"'s key
    "memops:memory:acme::1",  # empty type
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ScratchRedis]:
    scratch = ScratchRedis(free_port(), tmp_path_factory.mktemp("redis"), password="test-secret")
    scratch.start()
    yield scratch
    scratch.stop()


@pytest.fixture
def client(server: ScratchRedis):
    client = redis_client(server.target)
    client.flushall()
    wl.write_redis(client, wl.generate(7, 2, redis_keys_per_tenant=40))
    for key in ACME_LOOKALIKES:
        client.set(key, "lookalike")
    # Many acme keys (several SCAN steps and calls), one without TTL, one not a string.
    with client.pipeline(transaction=False) as pipe:
        for i in range(3000):
            pipe.set(wl.redis_key(PREFIX, "acme", "task", f"bulk{i}"), "v" * 50, ex=3600)
        pipe.set(wl.redis_key(PREFIX, "acme", "context", "forever"), "no ttl")
        pipe.hset(wl.redis_key(PREFIX, "acme", "session", "hash"), mapping={"a": "1"})
        pipe.execute()
    yield client
    client.close()


def dump_all(client) -> dict[bytes, tuple[bytes, int]]:
    return {
        k: (client.dump(k), client.execute_command("PEXPIRETIME", k)) for k in client.scan_iter()
    }


def members(client, tenant: str) -> set[bytes]:
    return {
        k
        for k in client.scan_iter(match=wl.namespace_pattern(PREFIX, tenant))
        if wl.key_in_namespace(k.decode(), PREFIX, tenant)
    }


def split(client, tenant: str) -> tuple[set[bytes], dict[bytes, tuple[bytes, int]]]:
    """The namespace's keys, and DUMP + expiry of every other key."""
    doomed = members(client, tenant)
    others = {k: v for k, v in dump_all(client).items() if k not in doomed}
    return doomed, others


def test_clear_removes_the_namespace_and_nothing_else(client) -> None:
    doomed, others = split(client, "acme")
    assert len(doomed) > 3000 and {k.encode() for k in ACME_LOOKALIKES} <= others.keys()

    lines = io.StringIO()
    with reporting(LineMeter(lines)):
        result = clear_namespace(client, PREFIX, "acme", count=200, max_keys=1000)

    assert members(client, "acme") == set()
    assert dump_all(client) == others  # payloads and absolute expiries, exactly
    assert result.unlinked == len(doomed) and result.members >= len(doomed)
    assert result.neighbours >= len(ACME_LOOKALIKES)
    assert result.calls > 1 and not result.dry_run
    assert lines.getvalue() == f"  … redis clear 'acme': {len(doomed):,} keys\n"


@pytest.mark.parametrize(
    "tenant", ["glob*star", "[brackets]", "question?mark", "back\\slash", "acme:eu", "{hash}tag"]
)
def test_hostile_names_are_literals(client, tenant: str) -> None:
    doomed, others = split(client, tenant)
    assert doomed  # the workload wrote keys for it

    result = clear_namespace(client, PREFIX, tenant)

    assert members(client, tenant) == set()
    assert dump_all(client) == others
    assert result.unlinked == len(doomed)


@pytest.mark.parametrize("tenant", ["nobody", "*", "acm?", "[a]cme"])
def test_a_namespace_without_keys_is_cleared_with_nothing_touched(client, tenant: str) -> None:
    before = dump_all(client)
    result = clear_namespace(client, PREFIX, tenant)
    assert (result.members, result.unlinked) == (0, 0)
    assert dump_all(client) == before


def test_dry_run_counts_and_touches_nothing(client) -> None:
    before = dump_all(client)
    doomed = members(client, "acme")
    result = clear_namespace(client, PREFIX, "acme", dry_run=True)
    assert result.dry_run and result.unlinked == 0
    assert result.members == len(doomed)  # no rehash during the scan: no key met twice
    assert dump_all(client) == before


def test_time_budget_bounds_each_call(client) -> None:
    """A tiny budget stops a call after its first SCAN step: many calls, same result."""
    doomed, others = split(client, "acme")
    result = clear_namespace(client, PREFIX, "acme", count=100, budget_ms=0.001)
    assert result.calls >= len(doomed) // 100
    assert result.unlinked == len(doomed)
    assert dump_all(client) == others


def test_bad_limits_are_refused_before_anything_runs(client) -> None:
    before = dump_all(client)
    with pytest.raises(ValueError):
        clear_namespace(client, PREFIX, "acme", count=0)
    assert dump_all(client) == before
