"""The backup-set core, no live stack: ids, manifest, local store, crypto, verify, retention."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import subprocess
import sys
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from backup_sets import TENANTS, write_set

from memops.backup import verify
from memops.backup.artifacts import TIERS, BackupError, RestoreRefused, SetNotFound
from memops.backup.crypto import (
    BackupKey,
    DecryptingReader,
    EncryptingReader,
    decrypting_reader,
    encrypted_size,
    encrypting_reader,
    load_key,
)
from memops.backup.manifest import (
    MANIFEST_NAME,
    Manifest,
    ManifestError,
    canonical_json,
    parse_manifest,
)
from memops.backup.retention import Policy, SetInfo, plan_retention, set_infos
from memops.backup.sealed_names import name_token
from memops.backup.set_ids import InvalidSetId, check_set_id, new_set_id, set_id_time
from memops.backup.sets import newest_whole_set, plan_prune, plan_restore, prune
from memops.backup.settings import BackupSettings
from memops.backup.store import LocalStore
from memops.backup.verify import register_checker, registered_checkers, verify_set

KEY = BackupKey(bytes(range(32)), "test")
OTHER_KEY = BackupKey(bytes(range(1, 33)), "test")


@pytest.fixture(autouse=True)
def _no_tier_checkers(monkeypatch: pytest.MonkeyPatch) -> None:
    """The sets here hold stand-in bytes, not real RDBs or dumps: the tier engines'
    checkers (registered when their modules are imported) do not apply to them."""
    monkeypatch.setattr(verify, "_CHECKERS", {})


# -- set ids ---------------------------------------------------------------------------


def test_set_ids_sort_by_time_and_parse_back() -> None:
    first = new_set_id(datetime(2026, 12, 1, 8, 15, tzinfo=UTC))
    second = new_set_id(datetime(2026, 12, 2, 8, 0, tzinfo=UTC))
    assert first.startswith("20261201T081500Z-") and first < second
    assert set_id_time(first) == datetime(2026, 12, 1, 8, 15, tzinfo=UTC)
    assert check_set_id(first) == first
    assert set_id_time("manual-1") is None


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "../etc",
        "a/b",
        "..",
        "x..y/..",
        "a b",
        "é",
        "-lead",
        "a" * 65,
        "20261201T081500Z-3f9a\n",
    ],
)
def test_bad_set_ids_are_refused_naming_them(bad: str) -> None:
    with pytest.raises(InvalidSetId) as caught:
        check_set_id(bad)
    assert repr(bad) in str(caught.value) and "\n" not in str(caught.value)
    assert isinstance(caught.value, ValueError)


# -- manifest ----------------------------------------------------------------------------


@pytest.fixture
def local_set(tmp_path: Path):
    store = LocalStore(tmp_path / "backups")
    manifest, sources = write_set(store, tmp_path)
    return store, manifest, sources


def test_manifest_round_trip(local_set) -> None:
    store, manifest, _ = local_set
    data = (store.root / manifest.set_id / MANIFEST_NAME).read_bytes()
    parsed = parse_manifest(data, set_id=manifest.set_id)
    assert parsed == manifest
    assert parsed.to_bytes() == data
    assert parsed.tiers == ("redis", "postgresql")
    rdb = next(r for r in parsed.files if r.name == "redis/dump.rdb")
    assert (rdb.kind, rdb.compression, rdb.artifact_name) == ("rdb", "", "dump.rdb")
    dump = parsed.files_of("redis")[1]
    assert (dump.kind, dump.compression) == ("jsonl", "zstd")
    assert parsed.artifacts["redis"].tenants.keys() == manifest.artifacts["redis"].tenants.keys()


def _one_line_refusal(data: bytes, set_id: str) -> str:
    with pytest.raises(ManifestError) as caught:
        parse_manifest(data, set_id=set_id)
    message = str(caught.value)
    assert "\n" not in message and message.startswith("manifest of set ")
    return message


def test_manifest_with_a_flipped_byte_is_refused(local_set) -> None:
    store, manifest, _ = local_set
    data = bytearray((store.root / manifest.set_id / MANIFEST_NAME).read_bytes())
    value_at = data.index(b'"rdb_format": "10"') + len(b'"rdb_format": "1')
    data[value_at] ^= 0x01  # "10" -> "11": still valid JSON
    assert "checksum mismatch" in _one_line_refusal(bytes(data), manifest.set_id)
    for position in range(0, len(data), 97):  # any single flipped byte anywhere is refused
        damaged = bytearray((store.root / manifest.set_id / MANIFEST_NAME).read_bytes())
        damaged[position] ^= 0x04
        _one_line_refusal(bytes(damaged), manifest.set_id)


def test_truncated_manifest_is_refused(local_set) -> None:
    store, manifest, _ = local_set
    data = (store.root / manifest.set_id / MANIFEST_NAME).read_bytes()
    message = _one_line_refusal(data[: len(data) // 2], manifest.set_id)
    assert "not valid JSON" in message
    assert "truncated" in message


def _resealed(document: dict) -> bytes:
    """``document`` with a correct self-checksum: a well-sealed but malformed manifest."""
    import hashlib

    body = {k: v for k, v in document.items() if k != "checksum"}
    document["checksum"] = "sha256:" + hashlib.sha256(canonical_json(body)).hexdigest()
    return json.dumps(document).encode()


def test_manifest_missing_field_is_named(local_set) -> None:
    _, manifest, _ = local_set
    document = manifest.to_dict()
    del document["files"][2]["sha256"]
    message = _one_line_refusal(_resealed(document), manifest.set_id)
    assert message == f"manifest of set {manifest.set_id}: missing field files[2].sha256"
    document = manifest.to_dict()
    del document["started_at"]
    assert "missing field started_at" in _one_line_refusal(_resealed(document), manifest.set_id)
    document = manifest.to_dict()
    del document["checksum"]
    assert "missing field checksum" in _one_line_refusal(json.dumps(document).encode(), "x")


def test_manifest_refuses_unsafe_names_and_misplaced_manifests(local_set) -> None:
    _, manifest, _ = local_set
    document = manifest.to_dict()
    document["files"][0]["name"] = "redis/../../etc/passwd"
    assert "unsafe" in _one_line_refusal(_resealed(document), manifest.set_id)
    data = manifest.to_bytes()
    assert "misplaced" in _one_line_refusal(data, "20200101T000000Z-0000")


# -- the local store ---------------------------------------------------------------------


def test_local_set_reads_back_byte_for_byte(local_set, tmp_path: Path) -> None:
    store, manifest, sources = local_set
    listing = store.list_sets()
    assert [m.set_id for m in listing.sets] == [manifest.set_id] and not listing.incomplete
    for record in manifest.files:
        dest = tmp_path / "fetched" / record.name
        dest.parent.mkdir(parents=True, exist_ok=True)
        fetched = store.fetch(manifest.set_id, record.name, dest, expect=record)
        assert dest.read_bytes() == sources[record.name].read_bytes()
        assert (fetched.stored.size, fetched.stored.sha256) == (record.size, record.sha256)
    set_dir = store.root / manifest.set_id
    assert oct(set_dir.stat().st_mode & 0o777) == "0o700"
    assert oct((set_dir / "redis" / "dump.rdb").stat().st_mode & 0o777) == "0o600"
    with pytest.raises(BackupError, match="already exists"):
        store.begin_set(manifest.set_id)


def test_set_without_manifest_is_not_listed_but_reported(local_set, tmp_path: Path) -> None:
    store, manifest, _ = local_set
    writer = store.begin_set("20261202T090000Z-dead")
    writer.put_file("redis/dump.rdb", tmp_path / "stage-redis" / "dump.rdb", tier="redis")
    listing = store.list_sets()
    assert [m.set_id for m in listing.sets] == [manifest.set_id]
    assert [(i.set_id, i.reason) for i in listing.incomplete] == [
        ("20261202T090000Z-dead", "no manifest")
    ]
    with pytest.raises(ManifestError, match="incomplete"):
        store.read_manifest("20261202T090000Z-dead")
    with pytest.raises(BackupError, match="no backup set 20261202T090000Z-beef"):
        store.read_manifest("20261202T090000Z-beef")
    with pytest.raises(InvalidSetId):
        store.read_manifest("../backups")
    store.delete_set("20261202T090000Z-dead")
    assert not store.list_sets().incomplete


def test_damaged_manifest_makes_the_set_incomplete(local_set) -> None:
    store, manifest, _ = local_set
    path = store.root / manifest.set_id / MANIFEST_NAME
    path.write_bytes(path.read_bytes()[:-40])
    listing = store.list_sets()
    assert not listing.sets
    assert listing.incomplete[0].set_id == manifest.set_id
    assert "not valid JSON" in listing.incomplete[0].reason


@pytest.fixture
def tiny_disk(tmp_path: Path):
    """A 1 MiB tmpfs (root can mount one); skipped where mounting is not allowed."""
    mount_point = tmp_path / "tiny"
    mount_point.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount_point)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", str(mount_point)], check=False)


def _names_under(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_full_disk_is_refused_before_writing(tiny_disk: Path, tmp_path: Path) -> None:
    big = tmp_path / "big.rdb"
    big.write_bytes(os.urandom(2 << 20))
    store = LocalStore(tiny_disk / "backups")
    writer = store.begin_set(new_set_id())
    with pytest.raises(BackupError) as caught:
        writer.put_file("redis/dump.rdb", big, tier="redis")
    assert "not enough space" in str(caught.value) and str(tiny_disk) in str(caught.value)
    assert _names_under(tiny_disk) == []


def test_disk_filling_up_half_way_leaves_no_file(tiny_disk: Path, tmp_path: Path) -> None:
    """The size is not known ahead (a stream): ENOSPC half way, one clear line, no file."""
    store = LocalStore(tiny_disk / "backups")
    set_id = new_set_id()
    store.begin_set(set_id)
    with pytest.raises(BackupError) as caught:
        store._write(set_id, "redis/dump.rdb", io.BytesIO(os.urandom(2 << 20)), None)
    message = str(caught.value)
    assert message.startswith("no space left in ") and "redis/dump.rdb" in message
    assert str(tiny_disk / "backups" / set_id / "redis") in message
    assert _names_under(tiny_disk) == []
    assert store.list_sets().incomplete[0].set_id == set_id


def test_a_failing_source_leaves_no_file(tmp_path: Path) -> None:
    class Broken(io.RawIOBase):
        def __init__(self) -> None:
            self.sent = 0

        def readable(self) -> bool:
            return True

        def read(self, size: int = -1) -> bytes:
            if self.sent > 3 << 20:
                raise OSError(5, "Input/output error")
            self.sent += 1 << 20
            return b"x" * (1 << 20)

    store = LocalStore(tmp_path / "backups")
    set_id = new_set_id()
    store.begin_set(set_id)
    with pytest.raises(BackupError, match="Input/output error"):
        store._write(set_id, "redis/dump.rdb", Broken(), None)
    assert _names_under(store.root) == []


# -- crypto ------------------------------------------------------------------------------


def _encrypt(data: bytes, key: BackupKey, chunk: int) -> bytes:
    return EncryptingReader(io.BytesIO(data), key, chunk_size=chunk).read()


@pytest.mark.parametrize("size", [0, 1, 4096, 4096 * 5, 4096 * 5 + 17])
def test_crypto_round_trip_of_many_chunks(size: int) -> None:
    data = os.urandom(size)
    reader = EncryptingReader(io.BytesIO(data), KEY, chunk_size=4096)
    sealed = b"".join(iter(lambda: reader.read(1000), b""))
    assert reader.plain_size == size
    assert size < 64 or data[:64] not in sealed
    back = DecryptingReader(io.BytesIO(sealed), KEY, name="f")
    assert b"".join(iter(lambda: back.read(777), b"")) == data


def test_wrong_key_is_refused_naming_both_key_ids() -> None:
    sealed = _encrypt(os.urandom(10_000), KEY, 4096)
    with pytest.raises(RestoreRefused) as caught:
        DecryptingReader(io.BytesIO(sealed), OTHER_KEY, name="redis/dump.rdb").read()
    assert KEY.key_id in str(caught.value) and OTHER_KEY.key_id in str(caught.value)
    assert len(KEY.key_id) == 16


def test_flipped_or_cut_ciphertext_is_refused() -> None:
    sealed = bytearray(_encrypt(os.urandom(4096 * 4), KEY, 4096))
    frame = 4096 + 16
    for cut, expected in (
        (len(sealed) - frame, "truncated after chunk 2"),  # a whole chunk dropped
        (len(sealed) - 100, "chunk 3 failed authentication"),  # cut inside the last chunk
        (10, "truncated: no complete encryption header"),
    ):
        with pytest.raises(BackupError, match=expected):
            DecryptingReader(io.BytesIO(bytes(sealed[:cut])), KEY, name="f").read()
    sealed[28 + frame + 5] ^= 0x01
    with pytest.raises(BackupError, match="f: chunk 1 failed authentication"):
        DecryptingReader(io.BytesIO(bytes(sealed)), KEY, name="f").read()


def test_keys_load_from_a_private_file_or_the_environment(tmp_path: Path) -> None:
    path = tmp_path / "backup.key"
    path.write_text(base64.b64encode(KEY.secret).decode() + "\n")
    path.chmod(0o644)
    with pytest.raises(BackupError, match="chmod 600"):
        load_key({"backup_encryption_key_file": str(path)}, {})
    path.chmod(0o600)
    assert load_key({"backup_encryption_key_file": str(path)}, {}).key_id == KEY.key_id
    env = {"MEMOPS_BACKUP_KEY": base64.b64encode(KEY.secret).decode()}
    loaded = load_key({}, env)
    assert loaded.key_id == KEY.key_id and KEY.secret.hex() not in repr(loaded)
    assert load_key({}, {}) is None
    with pytest.raises(BackupError, match="expected 32 bytes"):
        load_key({}, {"MEMOPS_BACKUP_KEY": base64.b64encode(b"short").decode()})


def test_encrypted_set_round_trip(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "backups")
    manifest, sources = write_set(store, tmp_path, key=KEY)
    assert manifest.encryption.key_id == KEY.key_id
    rdb = next(r for r in manifest.files if r.name == "redis/dump.rdb")
    stored = (store.root / manifest.set_id / rdb.name).read_bytes()
    assert sources[rdb.name].read_bytes()[:64] not in stored
    assert rdb.plain_size == sources[rdb.name].stat().st_size and rdb.size > rdb.plain_size
    keep = tmp_path / "restore"
    report = verify_set(store, manifest.set_id, key=KEY, keep_dir=keep)
    assert report.ok and report.content_checked, report.problem
    for name, source in sources.items():
        assert (keep / name).read_bytes() == source.read_bytes()
    with pytest.raises(RestoreRefused) as caught:
        verify_set(store, manifest.set_id, key=OTHER_KEY)
    assert KEY.key_id in str(caught.value) and OTHER_KEY.key_id in str(caught.value)
    with pytest.raises(RestoreRefused, match=KEY.key_id):
        verify_set(store, manifest.set_id, keep_dir=tmp_path / "nokey")
    without_key = verify_set(store, manifest.set_id)
    assert without_key.ok and not without_key.content_checked


def _rewrite_manifest(store: LocalStore, set_id: str, change: Any) -> None:
    """Edit a stored manifest as somebody with write access to the store could: the plain
    checksum recomputed, so only the authentication can tell."""
    path = store.root / set_id / MANIFEST_NAME
    document = json.loads(path.read_text())
    change(document)
    body = {k: v for k, v in document.items() if k != "checksum"}
    document["checksum"] = "sha256:" + hashlib.sha256(canonical_json(body)).hexdigest()
    path.write_text(json.dumps(document))


def test_a_set_written_with_the_key_is_authenticated_and_an_edit_is_refused(
    tmp_path: Path,
) -> None:
    store = LocalStore(tmp_path / "backups")
    manifest, _ = write_set(store, tmp_path, key=KEY)
    assert manifest.authentication and manifest.authentication.startswith("hmac-sha256:")
    assert verify_set(store, manifest.set_id, key=KEY).ok

    _rewrite_manifest(store, manifest.set_id, lambda d: d.update(started_at="2099-01-01T00:00:00Z"))
    report = verify_set(store, manifest.set_id, key=KEY)
    assert not report.ok and "forged or altered" in report.problem
    assert not verify_set(store, manifest.set_id, key=KEY, allow_unencrypted=False).ok

    _rewrite_manifest(store, manifest.set_id, lambda d: d.pop("authentication"))
    report = verify_set(store, manifest.set_id, key=KEY)
    assert not report.ok and "not authenticated" in report.problem
    assert "--allow-unencrypted" in report.problem


def test_an_encrypted_sets_manifest_names_no_tenant_in_clear(tmp_path: Path) -> None:
    """Tenant names are data: in an encrypted set's manifest they are keyed tokens, the names
    sealed beside them; a store holding the key reads the names, one without reads tokens."""
    store = LocalStore(tmp_path / "backups")
    manifest, _ = write_set(store, tmp_path, key=KEY, namespaces=("acme", "o'brien"))
    text = (store.root / manifest.set_id / MANIFEST_NAME).read_text()
    for name in (*TENANTS, "acme", "o'brien"):
        assert json.dumps(name) not in text, name  # as a JSON string: a key or a value
    assert "n-" in text and "sealed_names" in text

    without = store.read_manifest(manifest.set_id)
    assert all(t.startswith("n-") for t in without.namespaces)
    store.key = KEY
    with_key = store.read_manifest(manifest.set_id)
    assert set(with_key.namespaces) == {"acme", "o'brien"}
    assert set(with_key.artifacts["redis"].tenants) == set(manifest.artifacts["redis"].tenants)
    assert verify_set(store, manifest.set_id, key=KEY).ok  # the sealed body is what is signed
    store.key = OTHER_KEY  # another key cannot open them, nor guess them
    assert store.read_manifest(manifest.set_id).namespaces == without.namespaces
    assert name_token(KEY, "acme") != name_token(OTHER_KEY, "acme")
    with pytest.raises(RestoreRefused, match=f"{KEY.key_id}.*{OTHER_KEY.key_id}"):
        plan_restore(store, manifest.set_id, [], ["acme"])  # the key is named, not the tenant
    store.key = KEY
    assert plan_restore(store, manifest.set_id, [], ["acme"]).tenants == ("acme",)


def test_with_a_key_an_unencrypted_set_is_refused_unless_allowed(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "backups")
    manifest, _ = write_set(store, tmp_path)  # no key: plain, no authentication
    assert manifest.authentication is None
    assert verify_set(store, manifest.set_id).ok  # without a key nothing is authenticated
    report = verify_set(store, manifest.set_id, key=KEY, keep_dir=tmp_path / "keep")
    assert not report.ok and "not encrypted" in report.problem and KEY.key_id in report.problem
    assert not (tmp_path / "keep").exists() or not any((tmp_path / "keep").rglob("*.rdb"))
    allowed = verify_set(store, manifest.set_id, key=KEY, allow_unencrypted=True)
    assert allowed.ok, allowed.problem


def test_the_drill_never_picks_a_set_the_key_does_not_authenticate(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "backups")
    good, _ = write_set(store, tmp_path / "a", key=KEY)
    planted, _ = write_set(store, tmp_path / "b")  # newer, but anybody could have written it
    assert newest_whole_set(store).set_id == planted.set_id  # no key: nothing to tell
    assert newest_whole_set(store, KEY).set_id == good.set_id
    forged, _ = write_set(store, tmp_path / "c", key=KEY)
    _rewrite_manifest(store, forged.set_id, lambda d: d.update(finished_at=d["started_at"]))
    assert newest_whole_set(store, KEY).set_id == good.set_id


def _age_keygen(path: Path) -> Path:
    subprocess.run(["age-keygen", "-o", str(path)], check=True, capture_output=True)
    path.chmod(0o600)
    return path


def test_a_set_opens_with_the_standard_age_tool_and_its_age_keygen_key(tmp_path: Path) -> None:
    """New sets are age files: `age -d -i` the key file (made by age-keygen) opens them."""
    key = BackupKey.from_file(_age_keygen(tmp_path / "backup.key"))
    assert key.age_identity
    store = LocalStore(tmp_path / "backups")
    manifest, sources = write_set(store, tmp_path, key=key)
    assert manifest.encryption and manifest.encryption.algorithm == "age"
    for record in manifest.files:
        stored = store.root / manifest.set_id / record.name
        assert stored.stat().st_size == record.size
        opened = subprocess.run(
            ["age", "-d", "-i", str(tmp_path / "backup.key"), str(stored)],
            capture_output=True,
            check=True,
        ).stdout
        assert opened == sources[record.name].read_bytes()
        assert hashlib.sha256(opened).hexdigest() == record.plain_sha256
    assert verify_set(store, manifest.set_id, key=key, keep_dir=tmp_path / "keep").ok


def test_an_older_raw_key_stands_for_the_identity_it_prints(tmp_path: Path) -> None:
    """A 32-byte key: sets go to the identity HKDF'd from it, which age_identity prints."""
    store = LocalStore(tmp_path / "backups")
    manifest, sources = write_set(store, tmp_path, key=KEY)
    key_file = tmp_path / "backup.key"
    key_file.write_text(base64.b64encode(KEY.secret).decode())
    key_file.chmod(0o600)
    identity = tmp_path / "backup.age-id"
    printed = subprocess.run(
        [sys.executable, "-m", "memops.backup.age_identity", str(key_file)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert KEY.secret.hex() not in printed and KEY.key_id in printed
    identity.write_text(printed)
    record = manifest.files[0]
    opened = subprocess.run(
        ["age", "-d", "-i", str(identity), str(store.root / manifest.set_id / record.name)],
        capture_output=True,
        check=True,
    ).stdout
    assert opened == sources[record.name].read_bytes()


def test_sets_written_in_the_older_format_still_verify_and_restore(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import memops.backup.store as store_module

    store = LocalStore(tmp_path / "backups")
    with monkeypatch.context() as older:  # the writer of before
        older.setattr(store_module, "encrypting_reader", EncryptingReader)
        older.setattr(store_module, "stored_size", lambda size: encrypted_size(size))
        manifest, sources = write_set(store, tmp_path, key=KEY)
    first = store.root / manifest.set_id / manifest.files[0].name
    assert first.read_bytes().startswith(b"MEMOPSE1")  # the chunked AES-256-GCM format
    keep = tmp_path / "keep"
    report = verify_set(store, manifest.set_id, key=KEY, keep_dir=keep)
    assert report.ok, report.problem
    for name, source in sources.items():
        assert (keep / name).read_bytes() == source.read_bytes()


def test_a_damaged_age_file_is_named_and_refused(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "backups")
    manifest, _ = write_set(store, tmp_path, key=KEY)
    record = manifest.files[0]
    data = bytearray(age_encrypt(b"x" * 200_000, KEY))
    for cut, expected in ((100, "header"), (len(data) - 5, "last chunk"), (70_000, "chunk")):
        with pytest.raises(BackupError, match=expected):
            decrypting_reader(io.BytesIO(bytes(data[:cut])), KEY, name=record.name).read()
    data[5000] ^= 1
    with pytest.raises(BackupError, match="chunk 0 fails authentication"):
        decrypting_reader(io.BytesIO(bytes(data)), KEY, name=record.name).read()
    with pytest.raises(RestoreRefused, match="another key"):
        decrypting_reader(io.BytesIO(age_encrypt(b"y", OTHER_KEY)), KEY, name="f").read()


def age_encrypt(data: bytes, key: BackupKey) -> bytes:
    return encrypting_reader(io.BytesIO(data), key).read()


# -- verify ------------------------------------------------------------------------------


def test_verify_passes_a_good_set_and_runs_registered_checkers(local_set) -> None:
    store, manifest, _ = local_set
    seen: list[str] = []
    report = verify_set(
        store, manifest.set_id, checkers={"rdb": lambda path, record: seen.append(record.name)}
    )
    assert report.ok, report.problem
    assert seen == ["redis/dump.rdb"]
    assert [v.name for v in report.files] == [r.name for r in manifest.files]


def test_verify_names_a_file_with_a_flipped_byte(local_set) -> None:
    store, manifest, _ = local_set
    path = store.root / manifest.set_id / "redis" / "dump.rdb"
    data = bytearray(path.read_bytes())
    data[1234] ^= 0x01
    path.write_bytes(bytes(data))
    report = verify_set(store, manifest.set_id)
    assert not report.ok
    assert (
        report.problem
        == f"set {manifest.set_id}: redis/dump.rdb: sha256 differs from the manifest (damaged)"
    )
    assert [v.name for v in report.files if not v.ok] == ["redis/dump.rdb"]


def test_verify_names_a_truncated_file_and_a_missing_one(local_set) -> None:
    store, manifest, _ = local_set
    path = store.root / manifest.set_id / "postgresql" / "memory.pgdump.gz"
    path.write_bytes(path.read_bytes()[:-10])
    (store.root / manifest.set_id / "redis" / "ns" / "acme.jsonl.zst").unlink()
    report = verify_set(store, manifest.set_id)
    bad = {v.name: v.problem for v in report.files if not v.ok}
    assert "truncated" in bad["postgresql/memory.pgdump.gz"]
    assert bad["redis/ns/acme.jsonl.zst"] == "redis/ns/acme.jsonl.zst: missing"
    assert report.problem.startswith(f"set {manifest.set_id}: redis/ns/acme.jsonl.zst")


def test_verify_checks_compressed_files_decompress(tmp_path: Path) -> None:
    """A compressed file whose recorded checksum matches but whose stream is cut: zstd -t fails."""
    from backup_sets import stage_redis

    staging = tmp_path / "stage"
    artifact = stage_redis(staging)
    dump = staging / "ns" / "acme.jsonl.zst"
    dump.write_bytes(dump.read_bytes()[:-50])  # damaged before it was backed up
    store = LocalStore(tmp_path / "backups")
    writer = store.begin_set(new_set_id())
    writer.add_tier(artifact, staging)
    manifest = writer.finish()
    report = verify_set(store, manifest.set_id)
    assert not report.ok
    assert "redis/ns/acme.jsonl.zst: zstd failed" in report.problem


def test_verify_reports_a_damaged_manifest_and_the_checker_registry(local_set) -> None:
    store, manifest, _ = local_set
    path = store.root / manifest.set_id / MANIFEST_NAME
    path.write_bytes(path.read_bytes().replace(b'"7.0.15"', b'"7.0.16"'))
    report = verify_set(store, manifest.set_id)
    assert not report.ok and "checksum mismatch" in report.problem and report.manifest is None
    register_checker("test-kind", lambda path, record: None)
    assert "test-kind" in registered_checkers()


def test_failed_verify_for_restore_keeps_nothing(local_set, tmp_path: Path) -> None:
    store, manifest, _ = local_set
    path = store.root / manifest.set_id / "postgresql" / "memory.pgdump.gz"
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x10
    path.write_bytes(bytes(data))
    keep = tmp_path / "restore"
    report = verify_set(store, manifest.set_id, keep_dir=keep)
    assert not report.ok and "postgresql/memory.pgdump.gz" in report.problem
    assert _names_under(keep) == []


# -- retention ---------------------------------------------------------------------------


def _history(now: datetime) -> list[SetInfo]:
    """Sets every 6 hours over 60 days; the only verified ones are 45 days old."""
    infos = []
    for hours in range(0, 60 * 24, 6):
        taken = now - timedelta(hours=hours)
        infos.append(SetInfo(new_set_id(taken), taken, verified=44 <= hours / 24 < 46))
    return infos


def test_retention_keeps_exactly_the_policy_and_the_newest_verified() -> None:
    now = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)
    infos = _history(now)
    infos.append(SetInfo("20261202T083000Z-0bad", None, complete=False, problem="no manifest"))
    decisions = plan_retention(infos, Policy(daily=30, weekly=12), now=now)
    kept = {d.set_id for d in decisions if d.keep}

    complete = sorted((i for i in infos if i.complete), key=lambda i: i.taken_at, reverse=True)
    newest_per_day: dict[str, str] = {}
    newest_per_week: dict[str, str] = {}
    for info in complete:
        newest_per_day.setdefault(info.taken_at.date().isoformat(), info.set_id)
        year, week, _ = info.taken_at.isocalendar()
        newest_per_week.setdefault(f"{year}-W{week:02d}", info.set_id)
    days = sorted(newest_per_day, reverse=True)[:30]
    weeks = sorted(newest_per_week, reverse=True)[:12]
    verified = next(i.set_id for i in complete if i.verified)
    expected = {newest_per_day[d] for d in days} | {newest_per_week[w] for w in weeks}
    assert verified not in expected  # the rule matters in this history
    assert kept == expected | {verified}

    reasons = {d.set_id: d.reason for d in decisions}
    assert reasons[complete[0].set_id] == "daily 2026-12-02, weekly 2026-W49"
    assert reasons[verified] == "newest verified"
    assert reasons["20261202T083000Z-0bad"] == "incomplete: no manifest"
    assert {d.reason for d in decisions if not d.keep} == {
        "outside policy",
        "incomplete: no manifest",
    }
    assert len(decisions) == len(infos)


def test_retention_keeps_old_sets_when_backups_stopped() -> None:
    now = datetime(2026, 12, 2, tzinfo=UTC)
    infos = [
        SetInfo(new_set_id(now - timedelta(days=100 + d)), now - timedelta(days=100 + d))
        for d in range(5)
    ]
    assert all(d.keep for d in plan_retention(infos, Policy(daily=5, weekly=0), now=now))
    assert sum(d.keep for d in plan_retention(infos, Policy(daily=2, weekly=0), now=now)) == 2


def test_retention_reads_a_store_listing(local_set) -> None:
    store, manifest, _ = local_set
    store.begin_set("20261202T090000Z-dead")
    infos = set_infos(store.list_sets(), verified={manifest.set_id})
    decisions = {d.set_id: d for d in plan_retention(infos, now=datetime.now(UTC))}
    assert decisions[manifest.set_id].keep
    assert "newest verified" in decisions[manifest.set_id].reason
    assert not decisions["20261202T090000Z-dead"].keep


# -- retention by scope: whole sets and namespace sets (issue #22) -----------------------

NOW = datetime(2026, 12, 2, 18, 0, tzinfo=UTC)


def _whole(taken: datetime, *, verified: bool = False, tiers: tuple[str, ...] = TIERS) -> SetInfo:
    return SetInfo(new_set_id(taken), taken, verified=verified, tiers=tiers)


def _namespace(taken: datetime, *, verified: bool = False) -> SetInfo:
    return SetInfo(new_set_id(taken), taken, verified=verified, whole=False)


def _reasons(infos: list[SetInfo], policy: Policy) -> dict[str, tuple[bool, str]]:
    return {d.set_id: (d.keep, d.reason) for d in plan_retention(infos, policy, now=NOW)}


def test_namespace_sets_of_a_day_do_not_displace_its_whole_set() -> None:
    """The day's one whole set is its daily and weekly, however many safety backups follow."""
    days = [NOW - timedelta(days=d) for d in range(3)]
    whole = [_whole(day.replace(hour=1)) for day in days]
    safety = [_namespace(day.replace(hour=h)) for day in days for h in range(2, 18)]
    decided = _reasons(whole + safety, Policy(daily=2, weekly=1, namespace_days=7))
    assert decided[whole[0].set_id] == (True, "daily 2026-12-02, weekly 2026-W49")
    assert decided[whole[1].set_id] == (True, "daily 2026-12-01")
    assert decided[whole[2].set_id] == (False, "outside policy")
    assert {decided[s.set_id] for s in safety} == {(True, "namespace set within 7 days")}


def test_namespace_sets_are_kept_for_their_own_days_then_pruned() -> None:
    ages = {1: True, 6.9: True, 7: True, 7.01: False, 40: False}
    sets = {age: _namespace(NOW - timedelta(days=age)) for age in ages}
    whole = _whole(NOW - timedelta(days=60))
    decided = _reasons([whole, *sets.values()], Policy(daily=30, weekly=12, namespace_days=7))
    for age, kept in ages.items():
        reason = "namespace set within 7 days" if kept else "namespace set older than 7 days"
        assert decided[sets[age].set_id] == (kept, reason), age
    assert decided[whole.set_id] == (True, "daily 2026-10-03, weekly 2026-W40")
    one_day = _reasons(list(sets.values()), Policy(namespace_days=1))
    assert one_day[sets[1].set_id] == (True, "namespace set within 1 day")
    assert one_day[sets[6.9].set_id] == (False, "namespace set older than 1 day")
    none_kept = _reasons(list(sets.values()), Policy(namespace_days=0))
    assert not any(keep for keep, _ in none_kept.values())


def test_the_newest_verified_whole_set_is_kept_and_never_a_namespace_set() -> None:
    verified_whole = _whole(NOW - timedelta(days=20), verified=True)
    newer_whole = _whole(NOW - timedelta(days=1))  # did not verify
    recent_ns = _namespace(NOW - timedelta(hours=1), verified=True)
    old_ns = _namespace(NOW - timedelta(days=10), verified=True)
    decided = _reasons([verified_whole, newer_whole, recent_ns, old_ns], Policy(daily=1, weekly=0))
    assert decided[verified_whole.set_id] == (True, "newest verified")
    assert decided[newer_whole.set_id] == (True, "daily 2026-12-01")
    assert decided[recent_ns.set_id] == (True, "namespace set within 7 days")
    assert decided[old_ns.set_id] == (False, "namespace set older than 7 days")


def test_a_set_of_some_tiers_is_whole_for_those_tiers_only() -> None:
    stack = _whole(NOW.replace(hour=10), verified=True)
    redis_after = _whole(NOW.replace(hour=11), verified=True, tiers=("redis",))
    redis_before = _whole(NOW.replace(hour=9), tiers=("redis",))
    decided = _reasons([stack, redis_after, redis_before], Policy(daily=1, weekly=0))
    assert decided[redis_after.set_id] == (True, "daily 2026-12-02, newest verified")
    assert decided[stack.set_id] == (
        True,
        "daily 2026-12-02 (postgresql, qdrant), newest verified (postgresql, qdrant)",
    )
    assert decided[redis_before.set_id] == (False, "outside policy")


def test_negative_namespace_days_are_refused() -> None:
    with pytest.raises(ValueError, match="must not be negative"):
        Policy(namespace_days=-1)


@pytest.fixture
def mixed_store(tmp_path: Path) -> tuple[LocalStore, dict[str, Manifest]]:
    """A local store: yesterday's and today's whole sets, each followed by namespace sets,
    and a namespace set 10 days old."""
    now = datetime.now(UTC)
    store = LocalStore(tmp_path / "backups")
    made: dict[str, Manifest] = {}
    plan = {
        "old namespace": (now - timedelta(days=10), ("acme",)),
        "yesterday whole": (now - timedelta(days=1, hours=1), ()),
        "yesterday namespace": (now - timedelta(days=1), ("acme",)),
        "today whole": (now - timedelta(minutes=30), ()),
        "today namespace": (now - timedelta(minutes=10), ("acme", "glob*star")),
    }
    for label, (taken, namespaces) in plan.items():
        made[label] = write_set(store, tmp_path, namespaces=namespaces, taken_at=taken)[0]
    return store, made


def test_a_manifest_says_whether_its_set_is_whole(mixed_store) -> None:
    store, made = mixed_store
    listed = {m.set_id: m.whole for m in store.list_sets().sets}
    assert listed == {m.set_id: "whole" in label for label, m in made.items()}
    namespaced_tier = replace(
        made["today whole"],
        artifacts={"redis": replace(made["today whole"].artifacts["redis"], scope="namespaces")},
    )
    assert not namespaced_tier.whole  # no namespaces named, but a tier holds only some


def test_prune_of_a_store_keeps_whole_sets_and_recent_namespace_sets(mixed_store) -> None:
    store, made = mixed_store
    decisions = plan_prune(store, Policy(daily=2, weekly=0, namespace_days=7))
    reasons = {d.set_id: d.reason for d in decisions}
    today, yesterday = made["today whole"], made["yesterday whole"]
    assert reasons == {
        made["old namespace"].set_id: "namespace set older than 7 days",
        yesterday.set_id: f"daily {yesterday.started_at.date().isoformat()}",
        made["yesterday namespace"].set_id: "namespace set within 7 days",
        today.set_id: f"daily {today.started_at.date().isoformat()}, newest verified",
        made["today namespace"].set_id: "namespace set within 7 days",
    }
    assert prune(store, decisions) == [made["old namespace"].set_id]
    left = {m.set_id for m in store.list_sets().sets}
    assert left == {m.set_id for label, m in made.items() if label != "old namespace"}


def test_the_drill_picks_the_newest_whole_set(mixed_store, tmp_path: Path) -> None:
    store, made = mixed_store
    assert newest_whole_set(store) == made["today whole"]
    only_namespaces = LocalStore(tmp_path / "namespace-sets")
    write_set(only_namespaces, tmp_path, namespaces=("acme",))
    with pytest.raises(SetNotFound) as caught:
        newest_whole_set(only_namespaces)
    assert str(caught.value) == (
        f"no whole backup set in {only_namespaces.description} (only 1 namespace set(s)): "
        "run `invoke backup.create` without --namespace"
    )


def test_retention_settings_default_and_read_the_inventory(tmp_path: Path) -> None:
    assert BackupSettings({}, tmp_path).policy == Policy(daily=30, weekly=12, namespace_days=7)
    given = {
        "backup_retention_daily": 5,
        "backup_retention_weekly": "2",
        "backup_retention_namespace_days": 0,
    }
    assert BackupSettings(given, tmp_path).policy == Policy(daily=5, weekly=2, namespace_days=0)


@pytest.mark.parametrize("bad", [-1, 7.5, True, None, "a week", "", [7]])
@pytest.mark.parametrize(
    "name", ["backup_retention_daily", "backup_retention_weekly", "backup_retention_namespace_days"]
)
def test_bad_retention_settings_are_refused_naming_them(
    tmp_path: Path, name: str, bad: object
) -> None:
    with pytest.raises(BackupError) as caught:
        BackupSettings({name: bad}, tmp_path).policy  # noqa: B018
    assert str(caught.value) == f"{name}: expected a whole number of 0 or more, got {bad!r}"
