"""Verify a backup set: its manifest, every file's size and sha256, and what the files hold.

Verification is ``backup.verify`` and the first step of every restore: a restore
asks for ``keep_dir`` and gets the verified (decrypted) files there, so what it
restores is exactly what was checked. Checks per file kind are pluggable: the
tier engines register theirs (``register_checker("rdb", ...)``); compressed files
are always checked to decompress completely.
"""

from __future__ import annotations

import contextlib
import gzip
import hmac
import shutil
import subprocess
import tempfile
import zlib
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from memops.backup.artifacts import BackupError, RestoreRefused
from memops.backup.crypto import BackupKey, manifest_mac
from memops.backup.manifest import FileRecord, Manifest, ManifestError
from memops.backup.store import BackupStore
from memops.errors import one_line

Checker = Callable[[Path, FileRecord], None]  # raises BackupError (one line) when the file is bad

_CHECKERS: dict[str, Checker] = {}


def register_checker(kind: str, checker: Checker) -> None:
    """Check every file of ``kind`` (e.g. "rdb", "pgdump") with ``checker`` on verify.

    The checker gets the local, decrypted file; a compressed file has already
    been checked to decompress.
    """
    _CHECKERS[kind] = checker


def registered_checkers() -> dict[str, Checker]:
    return dict(_CHECKERS)


def run_tool(command: list[str], what: str, *, timeout_s: float | None = None) -> None:
    """Run a checking tool; its failure (or absence) is one BackupError line naming it."""
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
    except FileNotFoundError:
        raise BackupError(f"{command[0]} not found (run ./bootstrap.sh)") from None
    except subprocess.TimeoutExpired:
        raise BackupError(f"{what}: {command[0]} took longer than {timeout_s:g} s") from None
    if done.returncode != 0:
        detail = one_line(done.stderr or done.stdout)[-300:] or f"exit {done.returncode}"
        raise BackupError(f"{what}: {command[0]} failed: {detail}")


def check_decompresses(path: Path, record: FileRecord) -> None:
    """A zstd or gzip file decompresses to its end (a cut or damaged stream does not)."""
    if record.compression == "zstd":
        run_tool(["zstd", "-t", "-q", str(path)], record.name)
    elif record.compression == "gzip":
        try:
            with gzip.open(path, "rb") as handle:
                while handle.read(1 << 20):
                    pass
        except (OSError, EOFError, zlib.error) as exc:
            raise BackupError(f"{record.name}: gzip stream broken: {exc}") from None


@dataclass(frozen=True)
class FileVerdict:
    name: str
    ok: bool
    problem: str = ""


@dataclass(frozen=True)
class VerifyReport:
    set_id: str
    manifest: Manifest | None  # None when the manifest itself was refused
    files: tuple[FileVerdict, ...]
    problem: str  # the first problem, one line; "" when the set verified
    content_checked: bool  # False: encrypted and no key given, only the stored bytes checked

    @property
    def ok(self) -> bool:
        return not self.problem

    def to_dict(self) -> dict[str, Any]:
        return {
            "set_id": self.set_id,
            "ok": self.ok,
            "problem": self.problem,
            "content_checked": self.content_checked,
            "files": [
                {"name": v.name, "ok": v.ok, **({"problem": v.problem} if v.problem else {})}
                for v in self.files
            ],
        }


def verify_set(
    store: BackupStore,
    set_id: str,
    *,
    key: BackupKey | None = None,
    keep_dir: Path | None = None,
    scratch_dir: Path | None = None,
    tiers: Collection[str] | None = None,
    checkers: Mapping[str, Checker] | None = None,
    stop_at_first: bool = False,
    allow_unencrypted: bool = False,
) -> VerifyReport:
    """Check set ``set_id``; the report names the first bad file.

    ``keep_dir``: keep the verified, decrypted files there as ``{tier}/{name}``
    (for a restore; removed again when verification fails). ``scratch_dir``:
    where files are fetched for the checkers otherwise (a temporary directory
    by default). ``tiers`` limits the file checks to those tiers. An encrypted
    set and a key with another id: RestoreRefused naming both key ids, before
    any file is read.
    """
    try:
        manifest = store.read_manifest(set_id)
    except ManifestError as exc:
        return VerifyReport(set_id, None, (), str(exc), content_checked=False)
    encryption = manifest.encryption
    check_key(manifest, key, to_decrypt=keep_dir is not None)
    untrusted = "" if allow_unencrypted else untrusted_reason(manifest, key)
    if untrusted:
        return VerifyReport(set_id, manifest, (), f"set {set_id}: {untrusted}", False)
    use_key = key if encryption else None
    chosen = registered_checkers() if checkers is None else dict(checkers)
    records = [r for r in manifest.files if tiers is None or r.tier in tiers]
    verdicts: list[FileVerdict] = []
    with contextlib.ExitStack() as stack:
        if scratch_dir is None and keep_dir is None:
            scratch_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="memops-")))
        for record in records:
            problem = _verify_file(store, manifest, record, use_key, chosen, keep_dir, scratch_dir)
            verdicts.append(FileVerdict(record.name, not problem, problem))
            if problem and stop_at_first:
                break
    first = next((v.problem for v in verdicts if v.problem), "")
    if first and keep_dir is not None:
        for record in records:
            (keep_dir / record.name).unlink(missing_ok=True)
    return VerifyReport(
        set_id,
        manifest,
        tuple(verdicts),
        f"set {set_id}: {first}" if first else "",
        content_checked=not encryption or use_key is not None,
    )


def check_key(manifest: Manifest, key: BackupKey | None, *, to_decrypt: bool) -> None:
    """RestoreRefused naming both key ids when the set is encrypted with another key than
    ``key`` (or with one, and none is given, when its content is to be read)."""
    encryption, set_id = manifest.encryption, manifest.set_id
    if encryption and key and key.key_id != encryption.key_id:
        raise RestoreRefused(
            f"set {set_id} is encrypted with key {encryption.key_id}; the key given is {key.key_id}"
        )
    if encryption and key is None and to_decrypt:
        raise RestoreRefused(
            f"set {set_id} is encrypted with key {encryption.key_id} and no key was given"
        )


def untrusted_reason(manifest: Manifest, key: BackupKey | None) -> str:
    """Why a set is not to be trusted with ``key`` configured ("" when it is).

    Without a key nothing can be authenticated (and an encrypted set is refused
    elsewhere). With one, a set must be encrypted with it and its manifest carry a valid
    authentication: anyone who can write to the store can make a set that is neither, or
    recompute a plain checksum after editing one (its times, which set is newest).
    """
    if key is None:
        return ""
    allow = "; --allow-unencrypted trusts it anyway"
    if manifest.encryption is None:
        return (
            f"not encrypted, while backup key {key.key_id} is configured: anyone who can "
            f"write to the store could have made it{allow}"
        )
    if manifest.encryption.key_id != key.key_id:
        return ""  # refused naming both key ids by the caller
    if manifest.authentication is None:
        return (
            f"its manifest is not authenticated (written before manifests were, or stripped){allow}"
        )
    expected = manifest_mac(key, manifest.body_sha256 or manifest.body())
    if not hmac.compare_digest(manifest.authentication, expected):
        return "manifest authentication failed: it was forged or altered after it was written"
    return ""


def _verify_file(
    store: BackupStore,
    manifest: Manifest,
    record: FileRecord,
    key: BackupKey | None,
    checkers: Mapping[str, Checker],
    keep_dir: Path | None,
    scratch_dir: Path | None,
) -> str:
    """The problem with one file, or ""."""
    content_readable = manifest.encryption is None or key is not None
    checks: list[Checker] = []
    if content_readable:
        if record.compression:
            checks.append(check_decompresses)
        if record.kind in checkers:
            checks.append(checkers[record.kind])
    in_place = store.local_path(manifest.set_id, record.name) if key is None else None
    try:
        if in_place is not None:  # a local, unencrypted file: check it where it is
            if not in_place.is_file():
                return f"{record.name}: missing"
            size = in_place.stat().st_size
            if size != record.size:
                return (
                    f"{record.name}: {size} bytes, the manifest records {record.size} (truncated?)"
                )
        local: Path | None = None
        if keep_dir is not None:
            local = keep_dir / record.name
        elif checks and in_place is None:
            local = scratch_dir / record.name if scratch_dir else None
        if local is not None:
            local.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        store.fetch(manifest.set_id, record.name, local, key=key, expect=record)
        target = local or in_place
        try:
            for check in checks:
                if target is not None:
                    check(target, record)
        finally:
            if local is not None and keep_dir is None:
                local.unlink(missing_ok=True)
    except RestoreRefused:
        raise
    except BackupError as exc:
        message = str(exc)
        return message if message.startswith(record.name) else f"{record.name}: {message}"
    return ""


def discard_kept(keep_dir: Path) -> None:
    """Remove what a verify kept for a restore (after the restore, or when it is abandoned)."""
    shutil.rmtree(keep_dir, ignore_errors=True)
