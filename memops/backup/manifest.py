"""The one manifest of a backup set: what the set holds, and proof that it is whole.

The manifest is written last; a set without a manifest that parses does not
exist. It carries a checksum of itself (sha256 over its canonical JSON without
the ``checksum`` field), so a truncated, damaged or hand-edited manifest is
refused before anything trusts it. Parsing checks every field and fails with
one line naming the first field that is wrong.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from memops.backup import sealed_names
from memops.backup.artifacts import TIERS, BackupError, TierArtifact
from memops.backup.crypto import BackupKey, manifest_mac
from memops.errors import Refused

FORMAT = "memops-backup-set"
FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
COMPRESSIONS = {".zst": "zstd", ".zstd": "zstd", ".gz": "gzip"}

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_NAME_PART = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]*$")


class ManifestError(Refused, BackupError):
    """A manifest is missing, damaged or malformed; the message names the set and the field."""


def file_kind(name: str) -> tuple[str, str]:
    """(kind, compression) implied by a file name: ``memory.pgdump.zst`` -> ("pgdump", "zstd")."""
    base = name.rsplit("/", 1)[-1]
    compression = ""
    for suffix, method in COMPRESSIONS.items():
        if base.endswith(suffix):
            compression, base = method, base[: -len(suffix)]
            break
    kind = base.rsplit(".", 1)[1] if "." in base.lstrip(".") else "data"
    return kind or "data", compression


def is_safe_name(name: str) -> bool:
    """A relative path of plain components: never absolute, never ``..``, never hidden."""
    parts = name.split("/")
    return bool(name) and all(_NAME_PART.match(part) and part != ".." for part in parts)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def canonical_json(document: Mapping[str, Any]) -> bytes:
    return json.dumps(
        document, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def _checksum(document: Mapping[str, Any]) -> str:
    body = {key: value for key, value in document.items() if key != "checksum"}
    return "sha256:" + sha256_hex(canonical_json(body))


def body_digest(document: Mapping[str, Any]) -> bytes:
    """What a manifest's authentication covers: sha256 of all of it but checksum and MAC."""
    body = {k: v for k, v in document.items() if k not in ("checksum", "authentication")}
    return hashlib.sha256(canonical_json(body)).digest()


def _time_text(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class FileRecord:
    """One stored file. ``size``/``sha256`` are of the bytes in the store (the
    ciphertext when encrypted); ``plain_size``/``plain_sha256`` of the content."""

    name: str  # within the set: "{tier}/{name in the tier's artifact}"
    tier: str
    kind: str  # "rdb", "pgdump", ... (the verify checkers' registry key)
    compression: str  # "", "zstd" or "gzip"
    size: int
    sha256: str
    plain_size: int | None = None
    plain_sha256: str | None = None

    @property
    def artifact_name(self) -> str:
        """The name the tier engine gave the file (relative to its staging directory)."""
        return self.name.split("/", 1)[1]

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "name": self.name,
            "tier": self.tier,
            "kind": self.kind,
            "compression": self.compression,
            "size": self.size,
            "sha256": self.sha256,
        }
        if self.plain_sha256 is not None:
            data["plain_size"] = self.plain_size
            data["plain_sha256"] = self.plain_sha256
        return data


@dataclass(frozen=True)
class Encryption:
    key_id: str
    algorithm: str = "AES-256-GCM"
    chunk_size: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"algorithm": self.algorithm, "key_id": self.key_id, "chunk_size": self.chunk_size}


@dataclass(frozen=True)
class Manifest:
    set_id: str
    started_at: datetime
    finished_at: datetime
    tiers: tuple[str, ...]
    namespaces: tuple[str, ...]  # empty: whole tiers
    artifacts: dict[str, TierArtifact]
    files: tuple[FileRecord, ...]
    memops_version: str
    tool_versions: dict[str, str] = field(default_factory=dict)
    encryption: Encryption | None = None
    format_version: int = FORMAT_VERSION
    # "hmac-sha256:…" of the body (memops.backup.crypto.manifest_mac) when the set was
    # written with a backup key; None for sets without one (and older sets).
    authentication: str | None = None
    body_sha256: bytes = field(default=b"", compare=False, repr=False)  # as read

    @property
    def total_size(self) -> int:
        return sum(record.size for record in self.files)

    @property
    def whole(self) -> bool:
        """Taken without --namespace: every tier it holds is a full copy of that tier."""
        return not self.namespaces and all(a.scope == "full" for a in self.artifacts.values())

    def files_of(self, tier: str) -> tuple[FileRecord, ...]:
        return tuple(record for record in self.files if record.tier == tier)

    def to_dict(self) -> dict[str, Any]:
        document: dict[str, Any] = {
            "format": FORMAT,
            "format_version": self.format_version,
            "set_id": self.set_id,
            "memops_version": self.memops_version,
            "started_at": _time_text(self.started_at),
            "finished_at": _time_text(self.finished_at),
            "tiers": list(self.tiers),
            "namespaces": list(self.namespaces),
            "artifacts": {tier: art.to_dict() for tier, art in sorted(self.artifacts.items())},
            "files": [record.to_dict() for record in self.files],
            "tool_versions": dict(sorted(self.tool_versions.items())),
            "encryption": self.encryption.to_dict() if self.encryption else None,
        }
        if self.authentication is not None:
            document["authentication"] = self.authentication
        document["checksum"] = _checksum(document)
        return document

    def to_bytes(self, key: BackupKey | None = None) -> bytes:
        """The manifest file: indented JSON for people, checksummed in canonical form.

        With ``key`` (an encrypted set) its tenant names are sealed (``sealed_names``) and
        it is authenticated; ``authentication`` then says what it carries."""
        document = self.to_dict()
        if key is not None:
            body = {k: v for k, v in document.items() if k not in ("checksum", "authentication")}
            document = sealed_names.seal(body, key)
            document["authentication"] = manifest_mac(key, body_digest(document))
            document["checksum"] = _checksum(document)
        text = json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False)
        return (text + "\n").encode("utf-8")

    def body(self) -> bytes:
        """The digest its authentication covers (``body_digest`` of what it writes)."""
        return body_digest(self.to_dict())


def parse_manifest(
    data: bytes, *, set_id: str | None = None, key: BackupKey | None = None
) -> Manifest:
    """The manifest in ``data``, checked; ManifestError (one line) for anything wrong.

    ``set_id`` is the set the manifest was read from: a manifest naming another
    set is refused (a copied or misplaced manifest). ``key`` opens sealed tenant names.
    """
    fields = _Fields(set_id or "?")
    try:
        document = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise fields.fail("not UTF-8 text (damaged?)") from None
    except json.JSONDecodeError as exc:
        raise fields.fail(
            f"not valid JSON at line {exc.lineno} column {exc.colno} (truncated or edited?)"
        ) from None
    if not isinstance(document, dict):
        raise fields.fail("not a JSON object")
    recorded = fields.get(document, "checksum", str)
    if recorded != _checksum(document):
        raise fields.fail("manifest checksum mismatch (damaged or edited)")
    manifest = fields.manifest(sealed_names.unseal(document, key), set_id)
    return replace(manifest, body_sha256=body_digest(document))  # what was written, sealed


class _Fields:
    """Reads fields of a manifest document, failing with the path of the first bad one."""

    def __init__(self, label: str) -> None:
        self.label = label

    def fail(self, message: str) -> ManifestError:
        return ManifestError(f"manifest of set {self.label}: {message}")

    def get(self, obj: Mapping[str, Any], key: str, kind: type | tuple[type, ...], path: str = ""):
        where = f"{path}.{key}" if path else key
        if key not in obj:
            raise self.fail(f"missing field {where}")
        value = obj[key]
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
            names = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
            raise self.fail(f"field {where}: expected {names}, got {type(value).__name__}")
        return value

    def strings(self, obj: Mapping[str, Any], key: str, path: str = "") -> tuple[str, ...]:
        values = self.get(obj, key, list, path)
        for index, value in enumerate(values):
            if not isinstance(value, str):
                raise self.fail(f"field {path + '.' if path else ''}{key}[{index}]: not a string")
        return tuple(values)

    def string_map(self, obj: Mapping[str, Any], key: str, path: str = "") -> dict[str, str]:
        values = self.get(obj, key, dict, path)
        for name, value in values.items():
            if not isinstance(value, str):
                raise self.fail(f"field {path + '.' if path else ''}{key}.{name}: not a string")
        return dict(values)

    def time(self, obj: Mapping[str, Any], key: str) -> datetime:
        text = self.get(obj, key, str)
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise self.fail(f"field {key}: not an ISO 8601 time: {text!r}") from None
        if moment.tzinfo is None:
            raise self.fail(f"field {key}: a time without a zone: {text!r}")
        return moment.astimezone(UTC)

    def digest(self, obj: Mapping[str, Any], key: str, path: str) -> str:
        value = self.get(obj, key, str, path)
        if not _SHA256.match(value):
            raise self.fail(f"field {path}.{key}: not a sha256 hex digest")
        return value

    def size(self, obj: Mapping[str, Any], key: str, path: str) -> int:
        value = self.get(obj, key, int, path)
        if value < 0:
            raise self.fail(f"field {path}.{key}: negative")
        return value

    def manifest(self, doc: dict[str, Any], set_id: str | None) -> Manifest:
        if self.get(doc, "format", str) != FORMAT:
            raise self.fail(f"not a memops backup manifest (format {doc['format']!r})")
        version = self.get(doc, "format_version", int)
        if version > FORMAT_VERSION:
            raise self.fail(
                f"format {version} is newer than this memops reads ({FORMAT_VERSION}): upgrade"
            )
        named = self.get(doc, "set_id", str)
        if set_id is not None and named != set_id:
            raise self.fail(f"it names set {named!r} (a misplaced manifest)")
        self.label = named
        tiers = self.strings(doc, "tiers")
        unknown = [tier for tier in tiers if tier not in TIERS]
        if unknown or not tiers:
            raise self.fail(f"field tiers: unknown or no tiers {unknown}")
        encryption = self.encryption(doc)
        files = self.files(doc, tiers, encrypted=encryption is not None)
        return Manifest(
            set_id=named,
            started_at=self.time(doc, "started_at"),
            finished_at=self.time(doc, "finished_at"),
            tiers=tiers,
            namespaces=self.strings(doc, "namespaces"),
            artifacts=self.artifacts(doc, tiers, files),
            files=files,
            memops_version=self.get(doc, "memops_version", str),
            tool_versions=self.string_map(doc, "tool_versions"),
            encryption=encryption,
            format_version=version,
            authentication=self.get(doc, "authentication", str)
            if "authentication" in doc
            else None,
            body_sha256=body_digest(doc),
        )

    def encryption(self, doc: dict[str, Any]) -> Encryption | None:
        value = self.get(doc, "encryption", (dict, type(None)))
        if value is None:
            return None
        return Encryption(
            key_id=self.get(value, "key_id", str, "encryption"),
            algorithm=self.get(value, "algorithm", str, "encryption"),
            chunk_size=self.get(value, "chunk_size", int, "encryption"),
        )

    def files(
        self, doc: dict[str, Any], tiers: tuple[str, ...], *, encrypted: bool
    ) -> tuple[FileRecord, ...]:
        records: list[FileRecord] = []
        seen: set[str] = set()
        for index, entry in enumerate(self.get(doc, "files", list)):
            path = f"files[{index}]"
            if not isinstance(entry, dict):
                raise self.fail(f"field {path}: not an object")
            name = self.get(entry, "name", str, path)
            tier = self.get(entry, "tier", str, path)
            if not is_safe_name(name) or not name.startswith(f"{tier}/"):
                raise self.fail(f"field {path}.name: unsafe or outside its tier: {name!r}")
            if tier not in tiers:
                raise self.fail(f"field {path}.tier: {tier!r} is not one of the set's tiers")
            if name in seen:
                raise self.fail(f"field {path}.name: {name!r} listed twice")
            seen.add(name)
            compression = self.get(entry, "compression", str, path)
            if compression not in ("", *COMPRESSIONS.values()):
                raise self.fail(f"field {path}.compression: unknown {compression!r}")
            plain_size = plain_sha256 = None
            if encrypted:
                plain_size = self.size(entry, "plain_size", path)
                plain_sha256 = self.digest(entry, "plain_sha256", path)
            records.append(
                FileRecord(
                    name=name,
                    tier=tier,
                    kind=self.get(entry, "kind", str, path),
                    compression=compression,
                    size=self.size(entry, "size", path),
                    sha256=self.digest(entry, "sha256", path),
                    plain_size=plain_size,
                    plain_sha256=plain_sha256,
                )
            )
        return tuple(records)

    def artifacts(
        self, doc: dict[str, Any], tiers: tuple[str, ...], files: tuple[FileRecord, ...]
    ) -> dict[str, TierArtifact]:
        found = self.get(doc, "artifacts", dict)
        if sorted(found) != sorted(tiers):
            raise self.fail(f"field artifacts: tiers {sorted(found)} differ from {list(tiers)}")
        names = {record.name for record in files}
        artifacts: dict[str, TierArtifact] = {}
        for tier in tiers:
            path = f"artifacts.{tier}"
            data = self.get(found, tier, dict, "artifacts")
            for key, kind in (("files", list), ("tenants", dict), ("versions", dict)):
                self.get(data, key, kind, path)
            self.get(data, "positions", dict, path)
            for tenant, summary in data["tenants"].items():
                where = f"{path}.tenants[{tenant!r}]"
                if not isinstance(summary, dict):
                    raise self.fail(f"field {where}: not an object")
                self.get(summary, "count", int, where)
                self.get(summary, "checksum", str, where)
            try:
                artifact = TierArtifact.from_dict(data)
            except (KeyError, TypeError, ValueError) as exc:
                raise self.fail(f"field {path}: malformed ({exc})") from None
            if artifact.tier != tier:
                raise self.fail(f"field {path}.tier: {artifact.tier!r}")
            missing = [name for name in artifact.files if f"{tier}/{name}" not in names]
            if missing:
                raise self.fail(f"field {path}.files: {missing[0]!r} is not in files")
            artifacts[tier] = artifact
        return artifacts
