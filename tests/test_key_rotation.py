"""keys.init / status / rotate / retire against a real redis-server with a password.

What these tests prove: a rotation moves every sealed value to a new key and
keeps contents, creation times and TTLs, and leaves plain, corrupt and foreign
values byte-identical; a value a client changes between the read and the write
is not overwritten; a rotation killed half way (SIGKILL of the real `invoke
keys.rotate` process) resumes from its checkpoint and ends with every sealed
value under the new key, while a reader that re-reads the ring file finds every
value readable at every moment; retire refuses the active key and a key that
values still name, and succeeds once they moved; retire also refuses (naming
them) while backup sets in the store hold values sealed with the key or do not
record their key ids, fails when the store cannot be read, and with --force
retires anyway, naming and auditing those sets; the drill opens the sealed values
of the set it restores and fails naming a key id the ring lacks; a dry run changes
nothing, not even the ring; bad input is one line and touches nothing.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
import redis
from op_calls import call
from runbook_steps import check_output, parse, run_invoke

from memops.audit import AUDIT_FILE
from memops.backup import sealed_keys
from memops.backup.manifest import MANIFEST_NAME, parse_manifest
from memops.backup.redis.scratch import ScratchRedis
from memops.backup.sealed_keys import PER_KEY, recorded_key_ids
from memops.backup.store import LocalStore
from memops.clients import redis_client
from memops.deploy.targets_file import merge_targets
from memops.exitcodes import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK
from memops.keys.ring import KeyRing, is_vaulted, load_keyring, new_keyring, save_keyring
from memops.keys.rotation import (
    BatchWriter,
    Checkpoint,
    Counts,
    checkpoint_path,
    load_checkpoint,
    plan_batch,
    save_checkpoint,
)
from memops.keys.vault import PASSWORD_FILE_ENV
from memops.memory.redis_scan import scan_batch
from memops.memory.values import UNKNOWN_KEY, inspect_value, key_id_of_value, sealed_value
from memops.ops.backup import CREATE
from memops.ops.drill import DRILL
from memops.ops.keys import INIT, RETIRE, ROTATE, STATUS
from memops.testing import workload as wl

pytestmark = pytest.mark.integration

PORTS = range(31800, 31820)  # this suite's share of the machine
PASSWORD = "rotation-test-secret"
PREFIX = "rot"
REPO = Path(__file__).resolve().parents[1]


def free_port_in_range() -> int:
    for port in PORTS:
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {PORTS}")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ScratchRedis]:
    scratch = ScratchRedis(
        free_port_in_range(), tmp_path_factory.mktemp("redis"), password=PASSWORD
    )
    scratch.start()
    yield scratch
    scratch.stop()


@pytest.fixture
def client(server: ScratchRedis) -> Iterator[redis.Redis]:
    with redis_client(server.target) as connection:
        connection.flushall()
        yield connection


@dataclass
class Stack:
    inventory: Path
    state: Path
    client: redis.Redis
    capsys: pytest.CaptureFixture[str]

    @property
    def ring_path(self) -> Path:
        return self.state / "keyring.json"

    def call(self, operation: Any, **raw: Any) -> tuple[int, dict[str, Any], str]:
        return call(operation, self.inventory, self.capsys, **raw)

    def ring(self) -> KeyRing:
        ring = load_keyring(self.ring_path)
        assert ring is not None
        return ring


def make_inventory(tmp_path: Path, target: dict[str, Any]) -> tuple[Path, Path]:
    root = tmp_path / "inv"
    (root / "group_vars").mkdir(parents=True)
    (root / "hosts.yml").write_text("all:\n  hosts:\n    localhost:\n")
    (root / "group_vars" / "all.yml").write_text("{}\n")
    state = tmp_path / "state"
    merge_targets(state, "inv", {"redis": target}, {"redis": {"key_prefix": PREFIX}})
    return root, state


@pytest.fixture
def stack(
    tmp_path: Path,
    server: ScratchRedis,
    client: redis.Redis,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> Stack:
    target = {"kind": "redis", "host": "127.0.0.1", "port": server.port, "password": PASSWORD}
    root, state = make_inventory(tmp_path, target)
    monkeypatch.setenv("MEMOPS_STATE_DIR", str(state))
    monkeypatch.delenv("MEMOPS_KEYRING_FILE", raising=False)
    return Stack(root, state, client, capsys)


def seeded(stack: Stack, *, seed: int = 77, **given: Any) -> tuple[KeyRing, wl.Workload]:
    """A saved ring and a workload half sealed with it, written to Redis."""
    ring = new_keyring()
    save_keyring(stack.ring_path, ring)
    load = wl.generate(seed, prefix=PREFIX, keyring=ring, encrypted_share=0.5, **given)
    wl.write_redis(stack.client, load)
    return ring, load


def snapshot(client: redis.Redis) -> dict[bytes, tuple[bytes, int]]:
    """Every key: (its value, absolute expiry in ms; -1 without one)."""
    return {
        key: (client.get(key), client.execute_command("PEXPIRETIME", key))
        for key in client.scan_iter()
    }


def put_sealed(
    client: redis.Redis, key: str, content: str, ring: KeyRing, ex: int | None = None
) -> None:
    """A value sealed with the ring's active key, as an application writes it."""
    stamp = "2026-01-01T00:00:00+00:00"
    value = sealed_value(
        content, stamp, key_name=key, key_id=ring.active, secret=ring.active_secret
    )
    client.set(key, value, ex=ex)


def opened(client: redis.Redis, key: str, ring: KeyRing) -> Any:
    return inspect_value(client.get(key), key, ring)


# -- rotate ------------------------------------------------------------------------------


def test_rotation_moves_every_sealed_value_and_keeps_everything_else(stack: Stack) -> None:
    old_ring, load = seeded(stack)
    sealed = [e for e in load.redis if e.key_id]
    plain = [e for e in load.redis if not e.key_id]
    assert sealed and plain
    # Beside the workload: a sealed value without TTL, a corrupt value, another
    # application's key outside the prefix, and a value sealed with a key the ring lacks.
    lasting = wl.redis_key(PREFIX, "acme", "note", "lasting")
    put_sealed(stack.client, lasting, "no ttl", old_ring)
    corrupt = wl.redis_key(PREFIX, "acme", "note", "corrupt")
    stack.client.set(corrupt, "{not json", ex=3600)
    stranger_ring = new_keyring()
    stranger = wl.redis_key(PREFIX, "acme", "note", "stranger")
    put_sealed(stack.client, stranger, "x", stranger_ring)
    stack.client.set("other-app:memory:x", "untouched", ex=100)
    before = snapshot(stack.client)

    code, done, err = stack.call(ROTATE, batch="7", yes=True)

    assert code == EXIT_OK, err
    ring = stack.ring()
    assert ring.active != old_ring.active and set(ring.keys) == {old_ring.active, ring.active}
    assert stack.ring_path.stat().st_mode & 0o777 == 0o600
    after = snapshot(stack.client)
    assert after.keys() == before.keys()
    for entry in [*sealed, *plain]:
        key = entry.key.encode()
        check = opened(stack.client, entry.key, ring)
        assert check.good, (entry.key, check)
        assert check.key_id == (ring.active if entry.key_id else None)
        assert json.loads(after[key][0])["created_at"] == json.loads(entry.value)["created_at"]
        assert abs(after[key][1] - before[key][1]) <= 1000, entry.key  # TTL kept
        if entry.key_id:
            assert check.content == inspect_value(entry.value, entry.key, old_ring).content
        else:
            assert after[key] == before[key]  # byte-identical
    assert opened(stack.client, lasting, ring).key_id == ring.active
    assert stack.client.ttl(lasting) == -1
    for untouched in (corrupt, stranger, "other-app:memory:x"):
        assert after[untouched.encode()] == before[untouched.encode()]

    counts = done["counts"]
    assert counts["moved"] == len(sealed) + 1 and counts["plain"] == len(plain)
    assert counts["unreadable"] == {"not_json": 1, "unknown_key": 1}
    assert counts["changed"] == 0 and done["active"] == ring.active and not done["resumed"]
    finished = load_checkpoint(checkpoint_path(stack.state))
    assert finished is not None and finished.finished and finished.to_key == ring.active

    audit = (stack.state / "audit.jsonl").read_text()
    last = json.loads(audit.splitlines()[-1])
    assert last["action"] == "keys.rotate" and last["details"]["moved"] == len(sealed) + 1
    for secret in ring.to_json().split('"')[1::2]:
        if len(secret) == 44:  # a base64 key: never in the audit log
            assert secret not in audit


def test_a_value_changed_between_read_and_write_is_not_overwritten(stack: Stack) -> None:
    old_ring, load = seeded(stack, tenants=1, nasty=False, redis_keys_per_tenant=40)
    ring = old_ring.with_new_key()
    cursor, pairs = 0, []
    while True:
        cursor, found = scan_batch(stack.client, PREFIX, cursor, 1000)
        pairs += found
        if cursor == 0:
            break
    plan = plan_batch(pairs, ring)
    assert len(plan.writes) == len([e for e in load.redis if e.key_id]) >= 3
    rewritten, deleted = plan.writes[0][0], plan.writes[1][0]
    stack.client.set(rewritten, "written by a client meanwhile", keepttl=True)
    stack.client.delete(deleted)

    writer = BatchWriter(stack.client)
    stack.client.script_flush()  # a server that lost its scripts: the writer loads it again
    writer.send(plan.writes)
    moved, changed = writer.confirm()
    writer.close()

    assert (moved, changed) == (len(plan.writes) - 2, 2)
    assert stack.client.get(rewritten) == b"written by a client meanwhile"
    assert not stack.client.exists(deleted)
    for key, _old, new in plan.writes[2:]:
        assert stack.client.get(key) == new.encode()


def test_checkpoint_round_trip(tmp_path: Path) -> None:
    state = Checkpoint(
        "a" * 16, ("b" * 16,), PREFIX, cursor=123, batches=4,
        counts=Counts(3, 1, 2, 1, 0, {"tag_mismatch": 2}), started_at="t0", updated_at="t1",
    )  # fmt: skip
    path = tmp_path / "cp.json"
    save_checkpoint(path, state)
    assert load_checkpoint(path) == state
    assert path.stat().st_mode & 0o777 == 0o600
    assert state.counts.seen == 9


# -- killed half way ---------------------------------------------------------------------


class Reader(threading.Thread):
    """Reads every value again and again with the ring file as it is at that moment.

    Like an application, it re-reads the ring when a value names a key id it
    does not know (the ring gained the new key after it last read it).
    """

    def __init__(self, target: Any, ring_path: Path, expected: dict[str, str]) -> None:
        super().__init__(daemon=True)
        self.client = redis_client(target)
        self.ring_path, self.expected = ring_path, expected
        self.stop = threading.Event()
        self.failures: list[str] = []
        self.rounds = 0
        self.keys_seen: set[str] = set()

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                ring = load_keyring(self.ring_path)
                for key, content in self.expected.items():
                    raw = self.client.get(key)
                    check = inspect_value(raw, key, ring)
                    if check.reason == UNKNOWN_KEY:
                        ring = load_keyring(self.ring_path)
                        check = inspect_value(raw, key, ring)
                    if not check.good or check.content != content:
                        self.failures.append(f"{key}: {check.verdict} {check.reason}")
                    if check.key_id:
                        self.keys_seen.add(check.key_id)
                self.rounds += 1
        except Exception as exc:  # the test fails on it, not the thread silently
            self.failures.append(f"reader crashed: {exc!r}")
        finally:
            self.client.close()


def rotate_process(stack: Stack, *args: str) -> subprocess.Popen[bytes]:
    """The real `invoke keys.rotate` in its own process."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "MEMOPS_STATE_DIR": str(stack.state)}
    command = [sys.executable, "-m", "invoke", "keys.rotate", "--inventory", str(stack.inventory)]
    return subprocess.Popen(
        [*command, *args],
        cwd=REPO,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def wait_for_progress(path: Path, process: subprocess.Popen[bytes], batches: int) -> Checkpoint:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            state = load_checkpoint(path)
            if state is not None and state.batches >= batches and not state.finished:
                return state
        assert process.poll() is None, process.communicate()
        time.sleep(0.005)
    raise AssertionError("the rotation made no progress")


def test_rotation_killed_half_way_resumes_and_every_value_stays_readable(
    stack: Stack, server: ScratchRedis
) -> None:
    old_ring, load = seeded(stack, tenants=8, redis_keys_per_tenant=120)
    sealed = {e.key for e in load.redis if e.key_id}
    expected = {e.key: inspect_value(e.value, e.key, old_ring).content or "" for e in load.redis}
    reader = Reader(server.target, stack.ring_path, expected)
    reader.start()
    try:
        while reader.rounds < 1:  # it has read everything under the old ring alone
            time.sleep(0.01)
        first = rotate_process(stack, "--batch", "5", "--yes")
        stopped = wait_for_progress(checkpoint_path(stack.state), first, batches=40)
        first.send_signal(signal.SIGKILL)
        first.wait()
        assert first.returncode == -signal.SIGKILL

        ring = stack.ring()
        assert ring.active == stopped.to_key and set(ring.keys) == {old_ring.active, ring.active}
        under = {k for k in sealed if key_id_of_value(stack.client.get(k)) == ring.active}
        assert 0 < len(under) < len(sealed), "killed before or after the work, not half way"
        time.sleep(0.2)  # the reader keeps reading the half-rotated keyspace

        second = rotate_process(stack, "--batch", "50", "--yes", "--json")
        out, err = second.communicate(timeout=120)
        assert second.returncode == EXIT_OK, err.decode()
        done = json.loads(out)
        rounds_at_end = reader.rounds
        while reader.rounds < rounds_at_end + 1:  # one full round after the end
            time.sleep(0.01)
    finally:
        reader.stop.set()
        reader.join(30)
    assert reader.failures == []
    assert reader.rounds >= 3 and reader.keys_seen == {old_ring.active, ring.active}
    assert done["resumed"] and done["active"] == ring.active
    assert "did not finish" in err.decode()  # the runner notes the killed holder of the lock
    assert stack.ring().keys == ring.keys  # the resume added no key
    for key in sealed:
        assert key_id_of_value(stack.client.get(key)) == ring.active, key
    for entry in load.redis:
        if not entry.key_id:
            assert stack.client.get(entry.key) == entry.value.encode()
    final = load_checkpoint(checkpoint_path(stack.state))
    assert final is not None and final.finished
    # A batch written just before the kill, its checkpoint not yet saved, counts as current.
    assert final.counts.moved <= len(sealed) <= final.counts.moved + final.counts.current


def test_a_ring_in_ansible_vault_rotates_and_stays_vaulted(
    stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    password = tmp_path / "vault-pass"
    password.write_text("vault test password\n")
    monkeypatch.setenv(PASSWORD_FILE_ENV, str(password))
    code, doc, err = stack.call(INIT, vault=True)
    assert code == EXIT_OK and doc["vault"], err
    ring = stack.ring()
    load = wl.generate(9, prefix=PREFIX, keyring=ring, tenants=1, redis_keys_per_tenant=20)
    wl.write_redis(stack.client, load)

    code, doc, err = stack.call(ROTATE, yes=True)

    assert code == EXIT_OK, err
    assert is_vaulted(stack.ring_path) and stack.ring().active == doc["active"] != ring.active
    for entry in load.redis:
        if entry.key_id:
            assert opened(stack.client, entry.key, stack.ring()).key_id == doc["active"]
    monkeypatch.delenv(PASSWORD_FILE_ENV)
    code, _doc, err = stack.call(STATUS)
    assert code == EXIT_BAD_INPUT and PASSWORD_FILE_ENV in err


# -- retire ------------------------------------------------------------------------------


def test_retire_refuses_while_values_use_the_key_and_succeeds_after(stack: Stack) -> None:
    old_ring, load = seeded(stack, tenants=1, redis_keys_per_tenant=20)

    code, _doc, err = stack.call(RETIRE, key_id=old_ring.active, yes=True)
    assert code == EXIT_BAD_INPUT and "is the active key" in err

    assert stack.call(ROTATE, yes=True)[0] == EXIT_OK
    ring = stack.ring()
    # An application that still held the old ring writes one value with the old key.
    late = wl.redis_key(PREFIX, "acme", "note", "late")
    put_sealed(stack.client, late, "late", old_ring, ex=600)
    code, doc, err = stack.call(RETIRE, key_id=old_ring.active, yes=True)
    assert code == EXIT_BAD_INPUT and "1 value(s)" in err and "--no-new-key" in err
    assert stack.ring() == ring

    code, doc, err = stack.call(ROTATE, no_new_key=True, yes=True)
    assert code == EXIT_OK and doc["counts"]["moved"] == 1 and stack.ring() == ring
    code, doc, err = stack.call(RETIRE, key_id=old_ring.active, dry_run=True, yes=True)
    assert code == EXIT_OK and stack.ring() == ring
    code, doc, err = stack.call(RETIRE, key_id=old_ring.active, yes=True)

    assert code == EXIT_OK, err
    assert set(stack.ring().keys) == {ring.active}
    for entry in load.redis:
        assert opened(stack.client, entry.key, stack.ring()).good
    code, _doc, err = stack.call(RETIRE, key_id=old_ring.active, yes=True)
    assert code == EXIT_BAD_INPUT and "not in the key ring" in err


def test_retire_refuses_during_an_unfinished_rotation(stack: Stack) -> None:
    old_ring, _load = seeded(stack, tenants=1, redis_keys_per_tenant=5)
    ring = old_ring.with_new_key()
    save_keyring(stack.ring_path, ring)
    save_checkpoint(
        checkpoint_path(stack.state), Checkpoint(ring.active, (old_ring.active,), PREFIX, 17, 1)
    )
    code, _doc, err = stack.call(RETIRE, key_id=old_ring.active, yes=True)
    assert code == EXIT_BAD_INPUT and "unfinished" in err
    assert stack.ring() == ring


# -- retire and the backup sets ----------------------------------------------------------

CREATE_RAW = {"tier": None, "namespace": None, "target": None}


def backed_up(stack: Stack, **given: Any) -> dict[str, Any]:
    """``backup.create`` of the stack's Redis (whole, or ``namespace=[…]``): its document."""
    code, made, err = stack.call(CREATE, **CREATE_RAW | given)
    assert code == EXIT_OK, err
    return made


def sets_store(stack: Stack) -> LocalStore:
    return LocalStore(stack.state / "backups")


def audit_lines(stack: Stack) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (stack.state / AUDIT_FILE).read_text().splitlines()]


def test_retire_refuses_while_a_retained_backup_set_needs_the_key(stack: Stack) -> None:
    """Issue #22: a set taken before the rotation holds values sealed with the old key."""
    old_ring, load = seeded(stack, tenants=2, redis_keys_per_tenant=30)
    tenant = load.tenants[0]
    by_tenant = backed_up(stack, namespace=[tenant])["set_id"]
    whole = backed_up(stack)["set_id"]
    assert stack.call(ROTATE, yes=True)[0] == EXIT_OK
    ring = stack.ring()
    after = backed_up(stack)["set_id"]  # taken after the rotation: only the new key
    sealed = [e for e in load.redis if e.key_id]
    recorded = {
        m.set_id: recorded_key_ids(m.artifacts["redis"]) for m in sets_store(stack).list_sets().sets
    }
    assert recorded == {
        by_tenant: {old_ring.active: len([e for e in sealed if e.tenant == tenant])},
        whole: {old_ring.active: len(sealed)},
        after: {ring.active: len(sealed)},
    }
    ring_bytes = stack.ring_path.read_bytes()

    for dry_run in (True, False):
        code, doc, err = stack.call(RETIRE, key_id=old_ring.active, dry_run=dry_run, yes=True)
        assert code == EXIT_BAD_INPUT and doc["ok"] is False
        assert len(err.splitlines()) == 1 and "--force" in err
        assert "is still needed by 2 retained backup set(s)" in err
        assert by_tenant in err and whole in err and after not in err
    assert stack.ring_path.read_bytes() == ring_bytes
    assert audit_lines(stack)[-1]["result"] == "refused"

    code, doc, err = stack.call(RETIRE, key_id=old_ring.active, force=True, dry_run=True, yes=True)
    assert code == EXIT_OK and doc["forced"] and stack.ring_path.read_bytes() == ring_bytes
    code, doc, err = stack.call(RETIRE, key_id=old_ring.active, force=True, yes=True)

    assert code == EXIT_OK, err
    assert set(stack.ring().keys) == {ring.active}
    assert doc["forced"] and set(doc["backup_sets"]["needing"]) == {by_tenant, whole}
    assert "2 retained backup set(s) hold values sealed with key" in err
    assert by_tenant in err and whole in err and after not in err
    audit = audit_lines(stack)[-1]
    assert audit["action"] == "keys.retire" and audit["result"] == "forced"
    assert audit["details"]["sets_needing"] == sorted([by_tenant, whole])


def test_retire_once_the_sets_are_gone_needs_no_force(stack: Stack) -> None:
    old_ring, _load = seeded(stack, tenants=1, redis_keys_per_tenant=10)
    before = backed_up(stack)["set_id"]
    assert stack.call(ROTATE, yes=True)[0] == EXIT_OK
    assert stack.call(RETIRE, key_id=old_ring.active, yes=True)[0] == EXIT_BAD_INPUT
    sets_store(stack).delete_set(before)  # retention dropped it

    code, doc, err = stack.call(RETIRE, key_id=old_ring.active, yes=True)

    assert code == EXIT_OK, err
    assert not doc["forced"] and old_ring.active not in stack.ring().keys


def test_retire_cannot_tell_for_a_set_from_before_the_record(stack: Stack) -> None:
    """A manifest written before sets recorded key ids: it may need any key."""
    old_ring, _load = seeded(stack, tenants=1, redis_keys_per_tenant=10)
    assert stack.call(ROTATE, yes=True)[0] == EXIT_OK
    set_id = backed_up(stack)["set_id"]  # after the rotation, but its record is stripped
    path = stack.state / "backups" / set_id / MANIFEST_NAME
    manifest = parse_manifest(path.read_bytes())
    artifact = manifest.artifacts["redis"]
    older = replace(artifact, extra={"prefix": artifact.extra["prefix"]})
    path.write_bytes(replace(manifest, artifacts={"redis": older}).to_bytes())
    ring_bytes = stack.ring_path.read_bytes()

    code, _doc, err = stack.call(RETIRE, key_id=old_ring.active, yes=True)

    assert code == EXIT_BAD_INPUT and len(err.splitlines()) == 1
    assert "may be needed by 1 retained backup set(s) that do not record" in err and set_id in err
    assert stack.ring_path.read_bytes() == ring_bytes
    code, doc, err = stack.call(RETIRE, key_id=old_ring.active, force=True, yes=True)
    assert code == EXIT_OK and doc["backup_sets"]["unknown"] == [set_id] and set_id in err


def test_retire_with_a_backup_store_it_cannot_read_fails_unless_forced(stack: Stack) -> None:
    old_ring, _load = seeded(stack, tenants=1, redis_keys_per_tenant=10)
    assert stack.call(ROTATE, yes=True)[0] == EXIT_OK
    (stack.inventory / "group_vars" / "all.yml").write_text("backup_target: tape\n")
    ring_bytes = stack.ring_path.read_bytes()

    code, _doc, err = stack.call(RETIRE, key_id=old_ring.active, yes=True)

    assert code == EXIT_FAILED and len(err.splitlines()) == 1
    assert "cannot read the backup sets" in err and "tape" in err and "--force" in err
    assert stack.ring_path.read_bytes() == ring_bytes
    code, doc, err = stack.call(RETIRE, key_id=old_ring.active, force=True, yes=True)
    assert code == EXIT_OK and doc["forced"] and "could not be checked" in err


def drilled(stack: Stack, set_id: str | None = None) -> tuple[int, dict[str, Any], str]:
    return stack.call(DRILL, set_id=set_id, target=None)


def test_the_drill_opens_sealed_values_and_fails_naming_a_key_the_ring_lacks(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue #22: a set whose values need a retired key restores values nothing opens."""
    old_ring, load = seeded(stack, tenants=4, redis_keys_per_tenant=60)
    tenant = load.tenants[0]
    sealed = [e for e in load.redis if e.key_id]
    assert len(sealed) > PER_KEY  # the drill opens a sample of them, not all
    moved = next(e for e in sealed if e.tenant != tenant)
    copied = wl.redis_key(PREFIX, moved.tenant, "chat", "copied")
    stack.client.set(copied, moved.value)  # its tag names another key: corrupt, not missing
    whole = backed_up(stack)["set_id"]
    by_tenant = backed_up(stack, namespace=[tenant])["set_id"]
    stack.client.delete(copied)  # no rotation moves it: it does not open

    monkeypatch.setattr(sealed_keys, "PER_KEY", len(sealed) + 1)  # this time: open them all
    code, report, err = drilled(stack, whole)

    assert code == EXIT_OK, err
    found = report["tiers"]["redis"]["sealed"]
    assert found["key_ids"] == {old_ring.active: len(sealed) + 1}
    assert found["opened"] == len(sealed) and found["corrupt"] == {"tag_mismatch": 1}
    assert found["missing"] == {}
    monkeypatch.setattr(sealed_keys, "PER_KEY", PER_KEY)  # the sample again
    code, report, err = drilled(stack, whole)
    found = report["tiers"]["redis"]["sealed"]
    assert code == EXIT_OK and found["opened"] + sum(found["corrupt"].values()) == PER_KEY

    assert stack.call(ROTATE, yes=True)[0] == EXIT_OK
    assert stack.call(RETIRE, key_id=old_ring.active, force=True, yes=True)[0] == EXIT_OK
    for set_id, count in ((whole, len(sealed) + 1), (by_tenant, None)):
        code, report, err = drilled(stack, set_id)
        assert code == EXIT_FAILED and report["failed_tier"] == "redis"
        assert err.startswith("memops backup.drill: redis: sealed values name key(s) the key ring")
        assert old_ring.active in err and "does not hold" in err
        missing = report["tiers"]["redis"]["sealed"]["missing"]
        assert set(missing) == {old_ring.active}
        assert count is None or missing[old_ring.active] == count

    after = backed_up(stack)["set_id"]  # every value under the active key
    code, report, err = drilled(stack)
    assert code == EXIT_OK and report["set_id"] == after, err
    active = stack.ring().active
    stack.ring_path.unlink()
    code, report, err = drilled(stack)
    assert code == EXIT_FAILED and "no key ring at" in err and active in err


# -- dry run, init, status, refusals -----------------------------------------------------


def test_dry_run_changes_nothing_not_even_the_ring(stack: Stack) -> None:
    ring, load = seeded(stack)
    before, ring_bytes = snapshot(stack.client), stack.ring_path.read_bytes()

    code, doc, err = stack.call(ROTATE, dry_run=True, batch="9")

    assert code == EXIT_OK, err
    assert doc["dry_run"] and doc["counts"]["moved"] == len([e for e in load.redis if e.key_id])
    assert doc["active"] is None  # the new key of a dry run exists nowhere
    code, doc, err = stack.call(ROTATE, dry_run=True, no_new_key=True)
    assert code == EXIT_OK and doc["active"] == ring.active and doc["counts"]["moved"] == 0
    assert snapshot(stack.client) == before
    assert stack.ring_path.read_bytes() == ring_bytes
    assert not checkpoint_path(stack.state).exists()


def test_init_creates_a_private_ring_once_and_status_counts_values(stack: Stack) -> None:
    code, doc, err = stack.call(INIT)
    assert code == EXIT_OK and doc["created"], err
    assert stack.ring_path.stat().st_mode & 0o777 == 0o600
    ring_bytes = stack.ring_path.read_bytes()
    code, doc, _err = stack.call(INIT)
    assert code == EXIT_OK and not doc["created"] and stack.ring_path.read_bytes() == ring_bytes

    ring = stack.ring()
    load = wl.generate(3, prefix=PREFIX, keyring=ring, encrypted_share=0.5)
    wl.write_redis(stack.client, load)
    code, doc, err = stack.call(STATUS, batch="11")
    assert code == EXIT_OK, err
    assert doc["active"] == ring.active
    assert doc["keys"] == {ring.active: len([e for e in load.redis if e.key_id])}
    assert doc["not_sealed"] == len([e for e in load.redis if not e.key_id])
    assert doc["rotation"] is None


def test_refusals_are_one_line_and_touch_nothing(
    stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, _doc, err = stack.call(ROTATE, yes=True)
    assert code == EXIT_BAD_INPUT and "keys.init" in err and len(err.splitlines()) == 1

    _ring, _load = seeded(stack, tenants=1, redis_keys_per_tenant=5)
    before, ring_bytes = snapshot(stack.client), stack.ring_path.read_bytes()
    code, _doc, err = stack.call(ROTATE)  # no terminal, no --yes
    assert code == EXIT_BAD_INPUT and "--yes" in err
    stack.ring_path.chmod(0o640)
    code, _doc, err = stack.call(ROTATE, yes=True)
    assert code == EXIT_BAD_INPUT and "chmod 600" in err and len(err.splitlines()) == 1
    stack.ring_path.chmod(0o600)
    code, _doc, err = stack.call(RETIRE, key_id="not-a-key", yes=True)
    assert code == EXIT_BAD_INPUT and "--key-id" in err
    assert snapshot(stack.client) == before and stack.ring_path.read_bytes() == ring_bytes
    assert not checkpoint_path(stack.state).exists()

    # Redis down: the deployed target points at a port nothing listens on.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    down = {"kind": "redis", "host": "127.0.0.1", "port": closed, "password": PASSWORD}
    inventory, state = make_inventory(tmp_path / "down", down)
    monkeypatch.setenv("MEMOPS_STATE_DIR", str(state))
    save_keyring(state / "keyring.json", new_keyring())
    ring_bytes = (state / "keyring.json").read_bytes()
    code, _doc, err = call(ROTATE, inventory, stack.capsys, yes=True)
    assert code == EXIT_FAILED and "redis" in err and len(err.splitlines()) == 1
    assert PASSWORD not in err
    assert (state / "keyring.json").read_bytes() == ring_bytes


# -- the runbook -------------------------------------------------------------------------

RUNBOOK = REPO / "docs" / "runbooks" / "key-rotation.md"
RUNBOOK_PREFIX = "claude-flow"  # the page's
# key ids and the set of step 2, read from the output that first names them
CAPTURED = ("old-key", "new-key", "next-key", "set-id")


def _seed(stack: Stack) -> None:
    """The application seals values with the ring keys.init made (and writes plain ones)."""
    load = wl.generate(4, prefix=RUNBOOK_PREFIX, keyring=stack.ring(), tenants=8,
                       redis_keys_per_tenant=120)  # fmt: skip
    wl.write_redis(stack.client, load)


def _seal_three_with_the_old_key(stack: Stack) -> None:
    """An application that did not reload the ring after step 4."""
    ring = stack.ring()
    old = next(k for k in ring.keys if k != ring.active)
    for number in range(3):
        key = wl.redis_key(RUNBOOK_PREFIX, "late-writer", "chat", f"{number:012x}")
        value = sealed_value("late", "t", key_name=key, key_id=old, secret=ring.keys[old])
        stack.client.set(key, value, ex=3600)


def _sets_age_out(stack: Stack) -> None:
    """Retention drops the sets taken before the rotation: prune removes them."""
    store = sets_store(stack)
    for manifest in store.list_sets().sets:
        store.delete_set(manifest.set_id)


def _kill_a_rotation_half_way(stack: Stack) -> None:
    first = rotate_process(stack, "--batch", "5", "--yes")
    wait_for_progress(checkpoint_path(stack.state), first, batches=40)
    first.send_signal(signal.SIGKILL)
    first.wait()


# What happens before a step (section, position in it): what the page says led there.
BEFORE = {
    ("Procedure", 2): ("invoke keys.status", _seed),
    ("Procedure", 7): ("invoke keys.status", _seal_three_with_the_old_key),
    ("Procedure", 11): ("invoke keys.retire <old-key> --dry-run", _sets_age_out),
    ("After an interruption", 0): ("invoke keys.status", _kill_a_rotation_half_way),
}


def test_the_runbook_has_its_procedures() -> None:
    sections = {s.title: s.steps for s in parse(RUNBOOK.read_text(), heading="## ")}
    assert len(sections["Procedure"]) == 13 and len(sections["After an interruption"]) == 2
    assert not sections["Before you start"] and not sections["Ansible Vault"]


def test_every_step_prints_what_the_runbook_says(stack: Stack) -> None:
    merge_targets(stack.state, "inv", {}, {"redis": {"key_prefix": RUNBOOK_PREFIX}})
    values: dict[str, str] = {}
    ran = 0
    for section in parse(RUNBOOK.read_text(), heading="## "):
        for position, step in enumerate(section.steps):
            if hook := BEFORE.get((section.title, position)):
                assert step.command == hook[0], (section.title, position, step.command)
                hook[1](stack)
            lines = run_invoke(step, values, stack.inventory, stack.state)
            check_output(step, lines, values, captured=CAPTURED)
            ran += 1
    assert ran == 15
    ring = stack.ring()
    assert ring.active == values["next-key"] and set(ring.keys) == {values["new-key"], ring.active}
    sealed = [v for v in stack.client.mget(list(stack.client.scan_iter(count=1000))) if v]
    assert {key_id_of_value(v) for v in sealed} == {values["next-key"], None}  # all moved
