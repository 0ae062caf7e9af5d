"""Where backup sets live: a local directory (LocalStore) or an S3 prefix (S3Store).

Both keep the same promises. A file is visible under its name only once it is
complete (local: a temporary name renamed; S3: one PUT, or a multipart upload
that S3 shows only when it is completed). The manifest is written last, and a
set is listed only when its manifest parses; sets without one are listed apart
as incomplete so prune can remove them. Deleting a set removes its manifest
first, so a half-deleted set is incomplete, never a damaged "complete" one.

A multipart upload that never completed (the endpoint went away, the process was
killed) stays in S3, parts and all, until it is aborted. boto3 aborts it when a
transfer fails, but not when the endpoint itself is gone, so the S3 store counts
such uploads as part of their set: a set they alone left is listed as
incomplete, and deleting a set (prune) aborts them.

Writing goes through a ``SetWriter`` (``store.begin_set``): it stores each file
(encrypting it on the way when a key is given), computes sizes and sha256 while
streaming, and turns the tier artifacts into the manifest.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import shutil
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

import memops
from memops.backup import age_format
from memops.backup.age_format import Readable
from memops.backup.artifacts import TIERS, BackupError, SetNotFound, TierArtifact
from memops.backup.crypto import (
    AGE_ALGORITHM,
    BackupKey,
    decrypting_reader,
    encrypting_reader,
    stored_size,
)
from memops.backup.manifest import (
    MANIFEST_NAME,
    Encryption,
    FileRecord,
    Manifest,
    ManifestError,
    file_kind,
    is_safe_name,
    parse_manifest,
)
from memops.backup.set_ids import check_set_id, is_set_id, set_id_time
from memops.errors import one_line
from memops.files import open_atomic, write_atomic
from memops.progress import Counter, meter

COPY_BUFFER = 1 << 20


@dataclass(frozen=True)
class Stored:
    """Bytes that went through a stream: how many, and their sha256."""

    size: int
    sha256: str


@dataclass(frozen=True)
class Fetched:
    stored: Stored  # as kept in the store (ciphertext when encrypted)
    plain: Stored  # the content (the same as ``stored`` when not encrypted)


@dataclass(frozen=True)
class IncompleteSet:
    set_id: str
    reason: str  # "no manifest", or why the manifest was refused
    started_at: datetime | None  # from the set id, when it has the generated shape


@dataclass(frozen=True)
class SetListing:
    sets: tuple[Manifest, ...]  # complete sets, oldest first
    incomplete: tuple[IncompleteSet, ...]


class HashingReader:
    """Passes ``read`` through to ``source``, counting and hashing what it hands out."""

    def __init__(self, source: Readable, counter: Counter | None = None) -> None:
        self._source = source
        self._hash = hashlib.sha256()
        self._counter = counter
        self.size = 0

    def read(self, size: int = -1) -> bytes:
        data = self._source.read(size)
        self._hash.update(data)
        self.size += len(data)
        if self._counter is not None:
            self._counter.update(self.size)
        return data

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    @property
    def stored(self) -> Stored:
        return Stored(self.size, self._hash.hexdigest())


def _check_name(name: str) -> str:
    if not is_safe_name(name) or name == MANIFEST_NAME:
        raise BackupError(f"unsafe file name for a backup set: {name!r}")
    return name


@contextlib.contextmanager
def disk_errors(directory: Path, what: str) -> Iterator[None]:
    """A full disk (or quota) while writing ``what`` becomes one line naming the directory."""
    try:
        yield
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise BackupError(
                f"no space left in {directory} while writing {what}; nothing kept of it"
            ) from None
        raise BackupError(f"cannot write {what} in {directory}: {exc.strerror or exc}") from None


def ensure_space(directory: Path, size: int | None, what: str) -> None:
    """Refuse before writing when ``directory`` has less than ``size`` bytes free."""
    if size is None:
        return
    probe = directory
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if free < size:
        raise BackupError(
            f"not enough space in {directory} for {what}: it needs {size} bytes, {free} are free"
        )


def write_stream(dest: Path, source: Readable, *, size: int | None, what: str) -> None:
    """Copy ``source`` into ``dest`` atomically: complete under its name, or not there at all."""
    ensure_space(dest.parent, size, what)
    with disk_errors(dest.parent, what), open_atomic(dest) as handle:
        shutil.copyfileobj(source, handle, COPY_BUFFER)


class _Discard:
    def write(self, data: bytes) -> int:
        return len(data)


class BackupStore(ABC):
    """A place for backup sets. Subclasses provide the storage primitives below."""

    description: str  # "local /var/backups/memops", "s3://bucket/prefix/"
    key: BackupKey | None = None  # opens the tenant names of encrypted sets' manifests

    # -- primitives -------------------------------------------------------------
    @abstractmethod
    def _create_set(self, set_id: str) -> None:
        """Claim ``set_id``; BackupError when it already exists."""

    @abstractmethod
    def _write(self, set_id: str, name: str, source: Any, size: int | None) -> None:
        """Store ``source`` as ``name``: visible only when complete."""

    @abstractmethod
    def _write_manifest(self, set_id: str, data: bytes) -> None:
        """Store the manifest whole (the last write of a set)."""

    @abstractmethod
    def _read_small(self, set_id: str, name: str) -> bytes | None:
        """A small object (the manifest) whole; None when it does not exist."""

    @abstractmethod
    def open_file(self, set_id: str, name: str) -> contextlib.AbstractContextManager[Any]:
        """A readable stream of a stored file; BackupError naming it when it is missing."""

    @abstractmethod
    def _set_names(self) -> list[str]:
        """Every set-id-shaped name in the store, complete or not."""

    @abstractmethod
    def _delete(self, set_id: str) -> None:
        """Remove the set: its manifest first, then everything else."""

    @abstractmethod
    def check(self) -> None:
        """Raise BackupError when the store cannot be reached or written."""

    def local_path(self, set_id: str, name: str) -> Path | None:
        """The file itself when the store is a local directory (checkers read it in place)."""
        return None

    # -- the operations ---------------------------------------------------------
    def begin_set(self, set_id: str, *, key: BackupKey | None = None) -> SetWriter:
        self._create_set(check_set_id(set_id))
        return SetWriter(self, set_id, key)

    def read_manifest(self, set_id: str) -> Manifest:
        data = self._read_small(check_set_id(set_id), MANIFEST_NAME)
        if data is None:
            if set_id not in self._set_names():
                raise SetNotFound(f"no backup set {set_id} in {self.description}")
            raise ManifestError(f"set {set_id} has no manifest: it is incomplete, not a backup")
        return parse_manifest(data, set_id=set_id, key=self.key)

    def list_sets(self) -> SetListing:
        sets: list[Manifest] = []
        incomplete: list[IncompleteSet] = []
        for set_id in sorted(self._set_names()):
            data = self._read_small(set_id, MANIFEST_NAME)
            try:
                if data is None:
                    raise ManifestError("no manifest")
                sets.append(parse_manifest(data, set_id=set_id, key=self.key))
            except ManifestError as exc:
                reason = str(exc).removeprefix(f"manifest of set {set_id}: ")
                incomplete.append(IncompleteSet(set_id, reason, set_id_time(set_id)))
        sets.sort(key=lambda manifest: (manifest.started_at, manifest.set_id))
        return SetListing(tuple(sets), tuple(incomplete))

    def fetch(
        self,
        set_id: str,
        name: str,
        dest: Path | None,
        *,
        key: BackupKey | None = None,
        expect: FileRecord | None = None,
    ) -> Fetched:
        """Stream a file to ``dest`` (None: read and discard), decrypting with ``key``.

        With ``expect`` the sizes and sha256 are compared with the manifest's
        record before ``dest`` gets its name: a file that does not match is
        refused naming it, and nothing is left under ``dest``.
        """
        _check_name(name)
        total = expect.size if expect else None
        with (
            self.open_file(check_set_id(set_id), name) as raw,
            meter().count(f"reading {name}", "bytes", total) as counter,
        ):
            stored = HashingReader(raw, counter)
            plain = HashingReader(decrypting_reader(stored, key, name=name) if key else stored)
            if dest is None:
                shutil.copyfileobj(plain, _Discard(), COPY_BUFFER)
                self._compare(expect, stored, plain, key)
            else:
                size = expect.plain_size if expect and expect.plain_size is not None else None
                size = expect.size if expect and size is None else size
                ensure_space(dest.parent, size, name)
                with disk_errors(dest.parent, name), open_atomic(dest) as handle:
                    shutil.copyfileobj(plain, handle, COPY_BUFFER)
                    self._compare(expect, stored, plain, key)
        return Fetched(stored.stored, plain.stored)

    @staticmethod
    def _compare(
        expect: FileRecord | None, stored: HashingReader, plain: HashingReader, key: Any
    ) -> None:
        if expect is None:
            return
        got = stored.stored
        if got.size != expect.size:
            raise BackupError(
                f"{expect.name}: {got.size} bytes, the manifest records {expect.size} (truncated?)"
            )
        if got.sha256 != expect.sha256:
            raise BackupError(f"{expect.name}: sha256 differs from the manifest (damaged)")
        if key is not None and plain.stored.sha256 != expect.plain_sha256:
            raise BackupError(f"{expect.name}: decrypted content differs from the manifest")

    def delete_set(self, set_id: str) -> None:
        check_set_id(set_id)
        if set_id not in self._set_names():
            raise SetNotFound(f"no backup set {set_id} in {self.description}")
        self._delete(set_id)


class SetWriter:
    """Writes one set: files first (``put_file``, ``add_tier``), the manifest last (``finish``)."""

    def __init__(self, store: BackupStore, set_id: str, key: BackupKey | None) -> None:
        self.store = store
        self.set_id = set_id
        self.key = key
        self.started_at = datetime.now(UTC)
        self.records: list[FileRecord] = []
        self.artifacts: dict[str, TierArtifact] = {}
        self.finished = False

    def put_file(
        self,
        name: str,
        source: Path,
        *,
        tier: str,
        kind: str | None = None,
        compression: str | None = None,
    ) -> FileRecord:
        """Store ``source`` as ``name`` (encrypted when the set has a key); its record."""
        _check_name(name)
        if self.finished:
            raise BackupError(f"set {self.set_id} is finished: its manifest is written")
        implied_kind, implied_compression = file_kind(name)
        try:
            handle = source.open("rb")
        except OSError as exc:
            raise BackupError(f"cannot read {source}: {exc.strerror}") from None
        size = os.fstat(handle.fileno()).st_size
        if self.key is not None:
            size = stored_size(size)
        with handle, meter().count(f"storing {name}", "bytes", size) as counter:
            plain: Any = HashingReader(handle)
            if self.key is not None:  # it counts and hashes the plaintext as it encrypts
                plain = encrypting_reader(handle, self.key)
            stored = HashingReader(plain, counter)
            self.store._write(self.set_id, name, stored, size)
        encrypted = self.key is not None
        plain_sha = plain.plain_sha256 if encrypted else None
        record = FileRecord(
            name=name,
            tier=tier,
            kind=kind or implied_kind,
            compression=implied_compression if compression is None else compression,
            size=stored.size,
            sha256=stored.stored.sha256,
            plain_size=plain.plain_size if encrypted else None,
            plain_sha256=plain_sha,
        )
        self.records.append(record)
        return record

    def add_tier(self, artifact: TierArtifact, staging_dir: Path) -> tuple[FileRecord, ...]:
        """Store every file of a tier's artifact as ``{tier}/{name}``."""
        if artifact.tier not in TIERS or artifact.tier in self.artifacts:
            raise BackupError(f"set {self.set_id}: tier {artifact.tier!r} unknown or added twice")
        records = tuple(
            self.put_file(
                f"{artifact.tier}/{name}",
                staging_dir / name,
                tier=artifact.tier,
                kind=artifact.kinds.get(name),
            )
            for name in artifact.files
        )
        self.artifacts[artifact.tier] = artifact
        return records

    def finish(
        self,
        *,
        namespaces: tuple[str, ...] = (),
        tool_versions: Mapping[str, str] | None = None,
    ) -> Manifest:
        """Write the manifest: from now on the set exists."""
        if not self.artifacts:
            raise BackupError(f"set {self.set_id}: no tier was added")
        manifest = Manifest(
            set_id=self.set_id,
            started_at=self.started_at,
            finished_at=datetime.now(UTC),
            tiers=tuple(tier for tier in TIERS if tier in self.artifacts),
            namespaces=tuple(namespaces),
            artifacts=dict(self.artifacts),
            files=tuple(self.records),
            memops_version=memops.__version__,
            tool_versions=dict(tool_versions or {}),
            encryption=(
                Encryption(self.key.key_id, AGE_ALGORITHM, age_format.CHUNK) if self.key else None
            ),
        )
        data = manifest.to_bytes(key=self.key)
        self.store._write_manifest(self.set_id, data)
        if self.key is not None:  # as it reads back: authenticated
            manifest = parse_manifest(data, set_id=self.set_id, key=self.key)
        self.finished = True
        return manifest


# -- a local directory -------------------------------------------------------------


class LocalStore(BackupStore):
    """Sets as directories ``root/{set_id}/``, files and directories private to the owner."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.description = f"local {self.root}"

    def check(self) -> None:
        with disk_errors(self.root, "the backup directory"):
            self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not os.access(self.root, os.W_OK | os.X_OK):
            raise BackupError(f"backup directory {self.root} is not writable")

    def _set_dir(self, set_id: str) -> Path:
        return self.root / set_id

    def _create_set(self, set_id: str) -> None:
        with disk_errors(self.root, f"set {set_id}"):
            self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
            try:
                self._set_dir(set_id).mkdir(mode=0o700)
            except FileExistsError:
                raise BackupError(f"backup set {set_id} already exists in {self.root}") from None

    def _write(self, set_id: str, name: str, source: Any, size: int | None) -> None:
        dest = self._set_dir(set_id) / name
        with disk_errors(dest.parent, name):
            dest.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_stream(dest, source, size=size, what=name)

    def _write_manifest(self, set_id: str, data: bytes) -> None:
        directory = self._set_dir(set_id)
        with disk_errors(directory, MANIFEST_NAME):
            write_atomic(directory / MANIFEST_NAME, data)

    def _read_small(self, set_id: str, name: str) -> bytes | None:
        try:
            return (self._set_dir(set_id) / name).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise BackupError(f"cannot read {name} of set {set_id}: {exc.strerror}") from None

    @contextlib.contextmanager
    def open_file(self, set_id: str, name: str) -> Iterator[BinaryIO]:
        try:
            handle = (self._set_dir(set_id) / name).open("rb")
        except FileNotFoundError:
            raise BackupError(f"{name}: missing from set {set_id}") from None
        with handle:
            yield handle

    def local_path(self, set_id: str, name: str) -> Path | None:
        return self._set_dir(set_id) / name

    def _set_names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return [
            entry.name for entry in self.root.iterdir() if entry.is_dir() and is_set_id(entry.name)
        ]

    def _delete(self, set_id: str) -> None:
        directory = self._set_dir(set_id)
        (directory / MANIFEST_NAME).unlink(missing_ok=True)
        shutil.rmtree(directory)


# -- S3 ------------------------------------------------------------------------------

S3_VARS = {  # settings (inventory vars) -> the environment variables that stand in for them
    "backup_s3_bucket": ("MEMOPS_BACKUP_S3_BUCKET",),
    "backup_s3_prefix": ("MEMOPS_BACKUP_S3_PREFIX",),
    "backup_s3_endpoint_url": ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"),
    "backup_s3_region": ("AWS_REGION", "AWS_DEFAULT_REGION"),
    "backup_s3_access_key_id": ("AWS_ACCESS_KEY_ID",),
    "backup_s3_secret_access_key": ("AWS_SECRET_ACCESS_KEY",),
    "backup_s3_session_token": ("AWS_SESSION_TOKEN",),
}
MiB = 1 << 20
# what S3 answers when it may not (or cannot) list multipart uploads
UPLOADS_UNLISTABLE = ("AccessDenied", "NotImplemented")


@dataclass(frozen=True)
class S3Settings:
    """Where and how to reach S3. Credentials never print (``repr=False``)."""

    bucket: str
    prefix: str = ""
    endpoint_url: str | None = None
    region: str = "us-east-1"
    access_key_id: str | None = field(default=None, repr=False)
    secret_access_key: str | None = field(default=None, repr=False)
    session_token: str | None = field(default=None, repr=False)
    multipart_threshold: int = 64 * MiB
    multipart_chunksize: int = 64 * MiB
    connect_timeout_s: float = 3.0
    read_timeout_s: float = 60.0
    max_attempts: int = 2

    @classmethod
    def from_settings(
        cls, settings: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
    ) -> S3Settings:
        """From inventory variables (``backup_s3_*``), else the standard AWS environment."""
        settings = settings or {}
        environ = os.environ if environ is None else environ
        found: dict[str, str] = {}
        for var, env_names in S3_VARS.items():
            value = settings.get(var)
            if value in (None, ""):
                value = next((environ[n] for n in env_names if environ.get(n)), None)
            if value not in (None, ""):
                found[var.removeprefix("backup_s3_")] = str(value)
        if not found.get("bucket"):
            raise BackupError(
                "S3 target without a bucket: set backup_s3_bucket (or MEMOPS_BACKUP_S3_BUCKET)"
            )
        prefix = found.pop("prefix", "").strip("/")
        if prefix and not is_safe_name(prefix):
            raise BackupError(f"backup_s3_prefix {prefix!r}: use plain path components")
        sizes = {
            name: int(settings[f"backup_s3_{name}"])
            for name in ("multipart_threshold", "multipart_chunksize")
            if settings.get(f"backup_s3_{name}")
        }
        return cls(prefix=prefix + "/" if prefix else "", **found, **sizes)  # type: ignore[arg-type]

    @property
    def description(self) -> str:
        where = f" at {self.endpoint_url}" if self.endpoint_url else ""
        return f"s3://{self.bucket}/{self.prefix}{where}"


class S3Store(BackupStore):
    """Sets as key prefixes ``{prefix}{set_id}/`` in one bucket."""

    def __init__(self, settings: S3Settings, *, client: Any = None) -> None:
        self.settings = settings
        self.description = settings.description
        self._client = client or self._make_client()

    def _make_client(self) -> Any:
        import boto3
        from botocore.config import Config

        settings = self.settings
        session = boto3.session.Session(
            aws_access_key_id=settings.access_key_id,
            aws_secret_access_key=settings.secret_access_key,
            aws_session_token=settings.session_token,
            region_name=settings.region,
        )
        config = Config(
            connect_timeout=settings.connect_timeout_s,
            read_timeout=settings.read_timeout_s,
            retries={"max_attempts": settings.max_attempts, "mode": "standard"},
            s3={"addressing_style": "path" if settings.endpoint_url else "auto"},
        )
        return session.client("s3", endpoint_url=settings.endpoint_url, config=config)

    def _key(self, set_id: str, name: str = "") -> str:
        return f"{self.settings.prefix}{set_id}/{name}"

    @contextlib.contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        """Every boto3/botocore failure as one BackupError line naming the endpoint."""
        from boto3.exceptions import Boto3Error
        from botocore.exceptions import (
            BotoCoreError,
            ClientError,
            ConnectionError,
            NoCredentialsError,
        )

        where = self.description
        try:
            yield
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = error.get("Code", "?")
            if code in ("NoSuchBucket", "404") and "bucket" in action:
                raise BackupError(f"S3 bucket {self.settings.bucket} not found ({where})") from None
            message = one_line(str(error.get("Message", "")))
            raise BackupError(f"S3 {action} failed: {code} {message} ({where})") from None
        except NoCredentialsError:
            raise BackupError(
                f"no S3 credentials for {where}: set backup_s3_access_key_id and "
                "backup_s3_secret_access_key (vault) or the AWS environment"
            ) from None
        except ConnectionError as exc:
            raise BackupError(
                f"S3 endpoint unreachable during {action}: {one_line(str(exc))}"
            ) from None
        except (BotoCoreError, Boto3Error) as exc:
            raise BackupError(f"S3 {action} failed: {one_line(str(exc))} ({where})") from None

    def check(self) -> None:
        with self._errors("check of the bucket"):
            self._client.head_bucket(Bucket=self.settings.bucket)

    def _create_set(self, set_id: str) -> None:
        with self._errors("listing of the bucket"):
            found = self._client.list_objects_v2(
                Bucket=self.settings.bucket, Prefix=self._key(set_id), MaxKeys=1
            )
        if found.get("KeyCount", 0):
            raise BackupError(f"backup set {set_id} already exists in {self.description}")

    def _write(self, set_id: str, name: str, source: Any, size: int | None) -> None:
        from boto3.s3.transfer import TransferConfig

        config = TransferConfig(
            multipart_threshold=self.settings.multipart_threshold,
            multipart_chunksize=self.settings.multipart_chunksize,
            max_concurrency=4,
        )
        with self._errors(f"upload of {name}"):
            self._client.upload_fileobj(
                source, self.settings.bucket, self._key(set_id, name), Config=config
            )

    def _write_manifest(self, set_id: str, data: bytes) -> None:
        with self._errors(f"upload of {MANIFEST_NAME}"):
            self._client.put_object(
                Bucket=self.settings.bucket, Key=self._key(set_id, MANIFEST_NAME), Body=data
            )

    def _get(self, set_id: str, name: str) -> Any | None:
        """The streaming body of an object, or None when there is no such object."""
        from botocore.exceptions import ClientError

        with self._errors(f"download of {name}"):
            try:
                response = self._client.get_object(
                    Bucket=self.settings.bucket, Key=self._key(set_id, name)
                )
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                    return None
                raise
            return response["Body"]

    def _read_small(self, set_id: str, name: str) -> bytes | None:
        body = self._get(set_id, name)
        if body is None:
            return None
        with self._errors(f"download of {name}"), contextlib.closing(body):
            return body.read()

    @contextlib.contextmanager
    def open_file(self, set_id: str, name: str) -> Iterator[Any]:
        body = self._get(set_id, name)
        if body is None:
            raise BackupError(f"{name}: missing from set {set_id}")
        with self._errors(f"download of {name}"), contextlib.closing(body):
            yield body

    def _set_names(self) -> list[str]:
        names: set[str] = set()
        prefix = self.settings.prefix
        with self._errors("listing of the bucket"):
            pages = self._client.get_paginator("list_objects_v2").paginate(
                Bucket=self.settings.bucket, Prefix=prefix, Delimiter="/"
            )
            for page in pages:
                for common in page.get("CommonPrefixes", []):
                    name = common["Prefix"][len(prefix) :].rstrip("/")
                    if is_set_id(name):
                        names.add(name)
        for key, _upload_id in self._pending_uploads(prefix):
            name, slash, _rest = key[len(prefix) :].partition("/")
            if slash and is_set_id(name):
                names.add(name)  # a set whose only trace is an upload cut off part way
        return sorted(names)

    def _pending_uploads(self, prefix: str) -> list[tuple[str, str]]:
        """(key, upload id) of each multipart upload under ``prefix`` never completed or aborted.

        Empty when the store does not let these credentials list them (AccessDenied: the
        policy lacks s3:ListBucketMultipartUploads) or cannot (NotImplemented): listing and
        pruning sets work as before, and uploads left part way stay for a bucket lifecycle
        rule (AbortIncompleteMultipartUpload) to remove.
        """
        from botocore.exceptions import ClientError

        found: list[tuple[str, str]] = []
        with self._errors("listing of the multipart uploads"):
            pages = self._client.get_paginator("list_multipart_uploads").paginate(
                Bucket=self.settings.bucket, Prefix=prefix
            )
            try:
                for page in pages:
                    found += [(u["Key"], u["UploadId"]) for u in page.get("Uploads", [])]
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in UPLOADS_UNLISTABLE:
                    return []
                raise
        return found

    def _delete(self, set_id: str) -> None:
        """The manifest, then every pending multipart upload of the set, then its objects."""
        from botocore.exceptions import ClientError

        bucket = self.settings.bucket
        with self._errors(f"deletion of set {set_id}"):
            self._client.delete_object(Bucket=bucket, Key=self._key(set_id, MANIFEST_NAME))
            for key, upload_id in self._pending_uploads(self._key(set_id)):
                try:
                    self._client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
                except ClientError as exc:
                    if exc.response.get("Error", {}).get("Code") != "NoSuchUpload":
                        raise
            pages = self._client.get_paginator("list_objects_v2").paginate(
                Bucket=bucket, Prefix=self._key(set_id)
            )
            for page in pages:
                keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
                if not keys:
                    continue
                result = self._client.delete_objects(Bucket=bucket, Delete={"Objects": keys})
                if result.get("Errors"):
                    first = result["Errors"][0]
                    raise BackupError(
                        f"S3 deletion of {first.get('Key')} failed: {first.get('Code')}"
                    )
