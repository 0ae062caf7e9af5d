"""Redis tier backups against real redis-server processes (free ports, temp dirs).

Not fixed ports: those in the ephemeral range can be taken by any client connection's
local end at that moment.

The key ids a backup records are read from real DUMP payloads: ``dump_string`` gives
back every string as GET does, whatever encoding Redis chose (short and long lengths,
integers, LZF); a namespace export counts exactly the key ids ``key_id_of_value`` finds
in the values it holds (a sealed value Redis compressed included; other types, plain
values and other tenants left out); a set records them in the Redis artifact's
``extra`` (namespace sets from their dumps, whole sets from the live server after the
BGSAVE), and an artifact from before the record reads as unknown.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from memops.backup.artifacts import BackupError, RestoreRefused, TierArtifact
from memops.backup.redis.full import backup_full, check_rdb
from memops.backup.redis.ns_export import export_namespace, summarize
from memops.backup.redis.ns_restore import restore_namespace
from memops.backup.redis.nsfile import read_batches
from memops.backup.redis.payload import dump_string
from memops.backup.redis.scratch import ScratchRedis
from memops.backup.redis.server import server_version
from memops.backup.redis.tier import RedisTier
from memops.backup.redis.whole import restore_whole
from memops.backup.scratch import free_port, scratch_redis
from memops.backup.sealed_keys import KEY_IDS_DUMPS, KEY_IDS_LIVE, recorded_key_ids
from memops.clients import redis_client
from memops.keys.ring import KeyRing, new_keyring
from memops.memory.values import canonical_json, key_id_of_value, sealed_value
from memops.rebuild.redis_clear import clear_namespace
from memops.testing import workload as wl

pytestmark = pytest.mark.integration


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ScratchRedis]:
    scratch = ScratchRedis(free_port(), tmp_path / "data", password="test-secret")
    scratch.start()
    yield scratch
    scratch.stop()


def snapshot(client, prefix: str, tenant: str) -> dict[bytes, tuple[bytes, int]]:
    """key -> (DUMP payload, absolute expiry in ms) for every key of one namespace.

    PEXPIRETIME, not PTTL: a restore with ABSTTL keeps the absolute expiry, and a
    remaining time would shrink with however long the test took (a timed check).
    """
    keys = [
        k
        for k in client.scan_iter(match=wl.namespace_pattern(prefix, tenant))
        if wl.key_in_namespace(k.decode(), prefix, tenant)
    ]
    return {k: (client.dump(k), client.execute_command("PEXPIRETIME", k)) for k in keys}


def dump_all(client) -> dict[bytes, tuple[bytes, int]]:
    """key -> (DUMP payload, absolute expiry in ms) for every key of database 0."""
    return {
        k: (client.dump(k), client.execute_command("PEXPIRETIME", k)) for k in client.scan_iter()
    }


def same(before: dict, after: dict) -> None:
    assert before.keys() == after.keys()
    for key, (payload, expiry) in before.items():
        assert after[key][0] == payload, key
        assert abs(after[key][1] - expiry) <= 1, key


def test_full_backup_records_and_checks_the_rdb(server: ScratchRedis, tmp_path: Path) -> None:
    client = redis_client(server.target)
    work = wl.generate(1, 2)
    wl.write_redis(client, work)
    artifact = backup_full(client, tmp_path / "stage")
    assert artifact.files == ("redis-full.rdb",)
    assert artifact.tenants[""].count == len(work.redis)
    assert artifact.versions == {"redis": server_version(client), "rdb_format": "10"}
    rdb = tmp_path / "stage" / "redis-full.rdb"
    data = bytearray(rdb.read_bytes())
    data[len(data) // 2] ^= 0xFF
    rdb.write_bytes(bytes(data))
    with pytest.raises(BackupError, match="redis-check-rdb rejects it"):
        check_rdb(rdb)


def test_namespace_round_trip_touches_only_its_tenant(server: ScratchRedis, tmp_path: Path) -> None:
    client = redis_client(server.target)
    work = wl.generate(2, 2)
    wl.write_redis(client, work)
    short = f"{work.prefix}:memory:acme:session:short"
    client.set(short, "bye", px=1500)
    versions = {"redis": server_version(client)}
    files = {}
    for tenant in ("acme", "glob*star", "[brackets]"):
        files[tenant] = tmp_path / f"{tenant.encode().hex()}.ns"
        digest, _ = export_namespace(client, work.prefix, tenant, files[tenant], meta=versions)
        assert digest.count == 7 if tenant == "acme" else 6
    time.sleep(1.6)  # the short key expires between backup and restore
    before = {t: snapshot(client, work.prefix, t) for t in work.tenants}
    assert short.encode() not in before["acme"]
    for tenant, path in files.items():
        client.flushall()
        wl.write_redis(client, work)
        for key in client.scan_iter(match=wl.namespace_pattern(work.prefix, tenant)):
            if wl.key_in_namespace(key.decode(), work.prefix, tenant):
                client.set(key, "changed")
        others = {t: snapshot(client, work.prefix, t) for t in work.tenants if t != tenant}
        result = restore_namespace(client, path, versions, prefix=work.prefix, tenant=tenant)
        assert result.expired_skipped == (1 if tenant == "acme" else 0)
        same(before[tenant], snapshot(client, work.prefix, tenant))
        for other, keys in others.items():
            same(keys, snapshot(client, work.prefix, other))


def test_older_target_is_refused_before_anything(server: ScratchRedis, tmp_path: Path) -> None:
    client = redis_client(server.target)
    work = wl.generate(3, 1, nasty=False)
    wl.write_redis(client, work)
    tenant = work.tenants[0]
    path = tmp_path / "t.ns"
    export_namespace(client, work.prefix, tenant, path, meta={})
    client.flushall()
    with pytest.raises(RestoreRefused, match=r"Redis 99\.0\.0 .*Redis 7\."):
        restore_namespace(
            client, path, {"redis": "99.0.0", "rdb_format": "99"}, prefix=work.prefix, tenant=tenant
        )
    assert client.dbsize() == 0


def test_whole_restore_with_aof_on_survives_a_restart(tmp_path: Path) -> None:
    """The trap: with AOF on, Redis loads the AOF at start-up, never dump.rdb.

    The set is taken, the live data then changes (a key deleted, one rewritten, one
    added); the whole restore goes through the server, so after a restart (which
    loads the AOF) the data is what the set held, TTLs included.
    """
    live = ScratchRedis(free_port(), tmp_path / "live", password="test-secret")
    live.config = ("appendonly yes", "appendfsync always")
    live.start()
    try:
        client = redis_client(live.target)
        work = wl.generate(5, 3)
        wl.write_redis(client, work)
        client.set("plain:no-ttl", "kept")
        expiring = f"{work.prefix}:memory:acme:session:soon"
        client.set(expiring, "gone by restore time", px=1200)
        artifact = backup_full(client, tmp_path / "stage")
        held = dump_all(client)
        held.pop(expiring.encode())
        first = next(iter(work.redis)).key
        client.delete(first)
        client.set("plain:no-ttl", "rewritten after the set")
        client.set("late:key", "not in the set")
        time.sleep(1.3)  # the short-lived key's absolute expiry passes

        rdb = tmp_path / "stage" / "redis-full.rdb"
        with scratch_redis(rdb) as scratch, redis_client(scratch) as scratch_client:
            done = restore_whole(client, scratch_client, tmp_path / "stage", artifact.versions)

        assert done.restored == len(held)
        assert done.deleted == 1  # late:key
        assert "AOF on" in done.persisted
        live.stop()
        live.start()  # loads the AOF, as a real restart would
        client = redis_client(live.target)
        after = dump_all(client)
        same(held, after)
    finally:
        live.stop()


def test_whole_restore_refuses_a_set_with_other_databases(
    server: ScratchRedis, tmp_path: Path
) -> None:
    client = redis_client(server.target)
    client.set("db0:key", "x")
    client.execute_command("MOVE", "db0:key", "3")
    artifact = backup_full(client, tmp_path / "stage")
    client.set("live:key", "untouched")
    rdb = tmp_path / "stage" / "redis-full.rdb"
    with (
        scratch_redis(rdb) as scratch,
        redis_client(scratch) as scratch_client,
        pytest.raises(RestoreRefused, match="db3"),
    ):
        restore_whole(client, scratch_client, tmp_path / "stage", artifact.versions)
    assert client.get("live:key") == b"untouched"


def test_namespace_export_keeps_exactly_the_keys_of_key_in_namespace(
    server: ScratchRedis, tmp_path: Path
) -> None:
    """The export's filter on bytes (namespace_key_regex) must agree with key_in_namespace."""
    client = redis_client(server.target)
    head = "p:memory:a*[b]:"
    names = [
        f"{head}fact:1",
        f"{head}fact:x y",
        f"{head}type:id:extra",  # an id with ':'
        f"{head}:id",  # empty type
        f"{head}type:",  # empty id
        f"{head}type",  # no id
        f"{head[:-1]}:eu:fact:1",  # tenant a*[b]:eu
        "p:memory:aX[b]:fact:1",  # what the unescaped glob would match
        "p:memory:ab:fact:1",
    ]
    keys = [name.encode() for name in names] + [
        head.encode() + b"bin\x00ary:\xff\xfe",  # not UTF-8, a NUL in the type
        head.encode() + b"t:\n",
    ]
    for key in keys:
        client.set(key, b"v")
    wanted = {
        key
        for key in keys
        if wl.key_in_namespace(key.decode("utf-8", "surrogateescape"), "p", "a*[b]")
    }
    assert len(wanted) == 4
    path = tmp_path / "a.ns"
    export_namespace(client, "p", "a*[b]", path, meta={}, count=3)
    found = {key for batch in read_batches(path) for key, _, _ in batch}
    assert found == wanted
    assert summarize(client, "p", "a*[b]").count == 4


def test_namespace_export_counts_keys_that_vanish_between_scan_and_dump(
    server: ScratchRedis, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """redis-py 8 speaks RESP3: a key gone before its DUMP answers ``_``, not ``$-1``.

    Every third key of the namespace expires after SCAN listed it and before the
    MULTI/EXEC that reads it (the filter SCAN's keys pass through sets a 1 ms expiry
    on it from another connection and waits it out): the export must leave them out,
    count them, and write a file that restores the rest.
    """
    import memops.backup.redis.ns_export as export_module

    client = redis_client(server.target)
    assert client.connection_pool.connection_kwargs.get("protocol") in (None, 3)
    work = wl.generate(11, 2, nasty=False)
    wl.write_redis(client, work)
    tenant = work.tenants[0]
    for number in range(300):
        client.set(f"{work.prefix}:memory:{tenant}:session:bulk{number}", "x" * 40, ex=3600)
    other = work.tenants[1]
    other_before = snapshot(client, work.prefix, other)
    expirer = redis_client(server.target)
    real_pattern = export_module.namespace_key_regex
    seen: list[bytes] = []

    class ExpiringFilter:
        def __init__(self, prefix: str, name: str) -> None:
            self.match = real_pattern(prefix, name).fullmatch

        def fullmatch(self, key: bytes) -> object:
            found = self.match(key)
            if found:
                seen.append(key)
                if len(seen) % 3 == 0:
                    expirer.pexpire(key, 1)
                    time.sleep(0.002)
            return found

    monkeypatch.setattr(export_module, "namespace_key_regex", ExpiringFilter)
    path = tmp_path / "t.ns"
    digest, _ = export_namespace(
        client, work.prefix, tenant, path, meta={"redis": server_version(client)}, count=50
    )
    gone = len(seen) // 3
    assert gone >= 100
    assert digest.vanished == gone
    assert digest.count == len(set(seen)) - gone
    assert digest.summary().details["vanished"] == gone
    monkeypatch.undo()
    left = snapshot(client, work.prefix, tenant)
    assert digest.count == len(left)
    clear_namespace(client, work.prefix, tenant)
    done = restore_namespace(
        client, path, {"redis": server_version(client)}, prefix=work.prefix, tenant=tenant
    )
    assert done.restored == len(left)
    same(left, snapshot(client, work.prefix, tenant))
    same(other_before, snapshot(client, work.prefix, other))


def test_whole_restore_leaves_out_keys_that_expire_during_it(
    server: ScratchRedis, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Keys restored alive whose absolute expiry passes before the final check are not
    "another client's writes": the restore succeeds and counts them."""
    import memops.backup.redis.whole as whole_module

    client = redis_client(server.target)
    work = wl.generate(12, 2, nasty=False)
    wl.write_redis(client, work)
    soon = [f"{work.prefix}:memory:{work.tenants[0]}:session:soon{n}" for n in range(25)]
    expires_at = time.time() + 4
    for key in soon:
        client.set(key, "short-lived", pxat=int(expires_at * 1000))
    artifact = backup_full(client, tmp_path / "stage")
    held = {k: v for k, v in dump_all(client).items() if k.decode() not in soon}
    client.flushall()
    real_unlink = whole_module.unlink_unwanted

    def unlink_then_wait(*args: object, **kwargs: object) -> int:
        deleted = real_unlink(*args, **kwargs)
        assert client.exists(*soon) == len(soon)  # restored alive
        time.sleep(max(0.0, expires_at - time.time()) + 0.1)  # and now expired
        return deleted

    monkeypatch.setattr(whole_module, "unlink_unwanted", unlink_then_wait)
    rdb = tmp_path / "stage" / "redis-full.rdb"
    with scratch_redis(rdb) as scratch, redis_client(scratch) as scratch_client:
        done = restore_whole(client, scratch_client, tmp_path / "stage", artifact.versions)
    assert done.expired_during == len(soon)
    assert done.restored == len(held) + len(soon)
    same(held, dump_all(client))


def test_whole_restore_still_fails_when_another_client_writes(
    server: ScratchRedis, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import memops.backup.redis.whole as whole_module

    client = redis_client(server.target)
    wl.write_redis(client, wl.generate(13, 1, nasty=False))
    artifact = backup_full(client, tmp_path / "stage")
    real_unlink = whole_module.unlink_unwanted

    def unlink_then_write(*args: object, **kwargs: object) -> int:
        deleted = real_unlink(*args, **kwargs)
        client.set("written:meanwhile", "by another client")
        return deleted

    monkeypatch.setattr(whole_module, "unlink_unwanted", unlink_then_write)
    rdb = tmp_path / "stage" / "redis-full.rdb"
    with (
        scratch_redis(rdb) as scratch,
        redis_client(scratch) as scratch_client,
        pytest.raises(BackupError, match="another client wrote"),
    ):
        restore_whole(client, scratch_client, tmp_path / "stage", artifact.versions)


def test_a_full_backup_fetched_over_the_network_holds_the_same_keys(
    server: ScratchRedis, tmp_path: Path
) -> None:
    """The path for a server on another machine: the RDB comes as a replica gets it."""
    client = redis_client(server.target)
    work = wl.generate(21, 2)
    wl.write_redis(client, work)
    local = backup_full(client, tmp_path / "local", server=server.target)
    fetched = backup_full(client, tmp_path / "net", server=server.target, fetch="network")
    assert fetched.tenants[""].count == local.tenants[""].count == len(work.redis)
    assert fetched.versions == local.versions
    rdb = tmp_path / "net" / "redis-full.rdb"
    assert hashlib.sha256(rdb.read_bytes()).hexdigest() == fetched.tenants[""].checksum
    assert [p.name for p in (tmp_path / "net").iterdir()] == ["redis-full.rdb"]
    with scratch_redis(rdb) as copy, redis_client(copy) as copied:
        assert dump_all(copied).keys() == dump_all(client).keys()


def test_a_full_backup_of_a_server_elsewhere_never_reads_a_local_file(
    server: ScratchRedis, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server that is not on this machine: the dump.rdb CONFIG GET names here is some
    other server's file (or none). Without a target to fetch from, refused; with a wrong
    password, the fetch fails in one line; neither leaves a file."""
    import memops.backup.redis.full as full_module

    client = redis_client(server.target)
    wl.write_redis(client, wl.generate(22, 1))
    monkeypatch.setattr(full_module, "_server_is_here", lambda _client: False)
    opened: list[str] = []
    real_copy = full_module._copy_atomic
    monkeypatch.setattr(
        full_module, "_copy_atomic", lambda src, dst: opened.append(str(src)) or real_copy(src, dst)
    )
    stage = tmp_path / "stage"
    stage.mkdir()
    with pytest.raises(BackupError, match="does not run on this machine"):
        backup_full(client, stage)
    wrong = replace(server.target, password="not-the-password")
    with pytest.raises(BackupError, match="over the network failed"):
        backup_full(client, stage, server=wrong)
    assert not opened and not list(stage.iterdir())
    done = backup_full(client, stage, server=server.target)
    assert not opened and done.tenants[""].count > 0


# -- the key ids a set records -------------------------------------------------------

KID = "kid"  # the prefix of these tests' values


def _encoding(payload: bytes) -> str:
    """How the DUMP payload of a string stores it (the RDB length byte after the type)."""
    first = payload[1]
    if first >> 6 == 3:
        return {0xC0: "int8", 0xC1: "int16", 0xC2: "int32", 0xC3: "lzf"}[first]
    return {0: "6-bit", 1: "14-bit", 2: "32-bit"}[first >> 6]


def test_dump_string_reads_every_encoding_redis_writes(server: ScratchRedis) -> None:
    client = redis_client(server.target)
    rng = random.Random(5)
    values = [b"", b"7", b"-300", b"70000", b"12345678901234", b"x" * 10, os.urandom(300)]
    values += [os.urandom(20_000), os.urandom(70_000), b"ab" * 50, b"a" * 100_000]
    values += [bytes(rng.choice(b'{}"ab:') for _ in range(n)) for n in (21, 64, 999, 5000)]
    seen = Counter()
    for number, value in enumerate(values):
        client.set(f"k{number}", value)
        payload = client.dump(f"k{number}")
        seen[_encoding(payload)] += 1
        assert dump_string(payload) == client.get(f"k{number}"), number
    assert set(seen) == {"int8", "int16", "int32", "lzf", "6-bit", "14-bit", "32-bit"}
    client.hset("a-hash", "f", "v")
    assert dump_string(client.dump("a-hash")) is None
    assert dump_string(b"\x00\xc3garbage-that-is-no-lzf-at-all") is None


def _compressible_sealed(key: str, ring: KeyRing) -> str:
    """A sealed envelope with a long repetitive field: Redis stores it LZF-compressed."""
    sealed = sealed_value("x", "t", key_name=key, key_id=ring.active, secret=ring.active_secret)
    return canonical_json({**json.loads(sealed), "padding": "p" * 400})


def test_a_namespace_export_counts_exactly_the_key_ids_of_its_sealed_values(
    server: ScratchRedis, tmp_path: Path
) -> None:
    client = redis_client(server.target)
    old = new_keyring()
    ring = old.with_new_key()
    load = wl.generate(21, 3, prefix=KID, keyring=old, redis_keys_per_tenant=40)
    wl.write_redis(client, load)
    tenant, other = load.tenants[0], load.tenants[1]
    for number in range(7):  # a few values under the newer key
        key = wl.redis_key(KID, tenant, "chat", f"new{number}")
        client.set(key, sealed_value("n", "t", key_name=key, key_id=ring.active,
                                     secret=ring.active_secret))  # fmt: skip
    packed = wl.redis_key(KID, tenant, "chat", "packed")
    client.set(packed, _compressible_sealed(packed, old))
    assert _encoding(client.dump(packed)) == "lzf"
    client.hset(wl.redis_key(KID, tenant, "chat", "a-hash"), "key_id", old.active)
    client.set(wl.redis_key(KID, tenant, "chat", "number"), 12)

    digest, _ = export_namespace(client, KID, tenant, tmp_path / "t.ns", meta={})

    expected: Counter[str] = Counter()
    for key in client.scan_iter(match=wl.namespace_pattern(KID, tenant)):
        if wl.key_in_namespace(key.decode(), KID, tenant) and client.type(key) == b"string":
            key_id = key_id_of_value(client.get(key))
            if key_id:
                expected[key_id] += 1
    assert digest.key_ids is not None
    assert digest.key_ids.to_dict() == dict(expected)
    assert expected[ring.active] == 7 and expected[old.active] > 7
    assert any(e.tenant == other and e.key_id for e in load.redis)  # not counted: not its own


def test_a_set_records_the_key_ids_its_redis_tier_holds(
    server: ScratchRedis, tmp_path: Path
) -> None:
    client = redis_client(server.target)
    ring = new_keyring()
    load = wl.generate(22, 2, prefix=KID, keyring=ring, redis_keys_per_tenant=30)
    wl.write_redis(client, load)
    tier = RedisTier(server.target, prefix=KID)
    try:
        (tmp_path / "ns").mkdir()
        tenants = list(load.tenants[:2])
        by_namespace = tier.backup(tmp_path / "ns", tenants=tenants)
        (tmp_path / "full").mkdir()
        whole = tier.backup(tmp_path / "full")
    finally:
        tier.close()
    sealed = Counter(e.key_id for e in load.redis if e.key_id)
    in_tenants = Counter(e.key_id for e in load.redis if e.key_id and e.tenant in tenants)
    for artifact, expected, source in (
        (by_namespace, in_tenants, KEY_IDS_DUMPS),
        (whole, sealed, KEY_IDS_LIVE),
    ):
        read_back = TierArtifact.from_dict(artifact.to_dict())  # as the manifest keeps it
        assert recorded_key_ids(read_back) == dict(expected) != {}
        assert read_back.extra["key_ids_from"] == source
    older = TierArtifact.from_dict({**whole.to_dict(), "extra": {"prefix": KID}})
    assert recorded_key_ids(older) is None
