"""Client-side encryption of backup files, and the backup key.

New sets are written in the age format (``memops.backup.age_format``): an operator
without memops opens their files with the standard ``age`` tool
(docs/restore-by-hand.md). The key is one X25519 identity: an ``age-keygen`` identity
file is used as it is (``age -d -i`` that file opens a set); an older 32-byte key (raw
or base64) stands for the identity HKDF derives from it (``python -m
memops.backup.age_identity`` prints it once, to keep beside the key).

Sets written before (``algorithm: AES-256-GCM`` in their manifest) stay readable: their
files are a stream of chunks (the STREAM construction): a header (magic, key id, chunk
size, a random 8-byte nonce prefix), then chunks of ``chunk_size`` plaintext bytes, each
sealed with the nonce ``prefix || counter`` and, as associated data, the header, the
chunk's index and whether it is the last one. Reordered, dropped, edited or appended
chunks fail authentication; a stream cut at a chunk boundary fails because its new last
chunk was not sealed as the last one. A reader tells the two formats by their first bytes.

The key comes from a file (mode 0600 or stricter) or an environment variable. Its id (a
fingerprint, safe to log) goes into the manifest, so a set is refused by key id, not by
a failing tag, when the key is another one.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from memops.backup import age_format
from memops.backup.age_format import Readable, read_full
from memops.backup.artifacts import BackupError, RestoreRefused

ALGORITHM = "AES-256-GCM"
KEY_ENV = "MEMOPS_BACKUP_KEY"  # base64 of 32 bytes
KEY_FILE_VAR = "backup_encryption_key_file"  # inventory variable naming a 0600 key file
DEFAULT_CHUNK = 1 << 20
_MAGIC = b"MEMOPSE1"
_HEADER = struct.Struct(">8s8sI8s")  # magic, key id (raw 8 bytes), chunk size, nonce prefix
_TAG = 16


def key_id_of(key: bytes) -> str:
    """A short fingerprint of a key: the first 16 hex digits of its sha256."""
    return hashlib.sha256(key).hexdigest()[:16]


@dataclass(frozen=True)
class BackupKey:
    secret: bytes = field(repr=False)
    source: str = ""  # where it came from, for messages (never the key itself)
    age_identity: bool = False  # ``secret`` is an age X25519 identity (an age-keygen file)

    def __post_init__(self) -> None:
        if len(self.secret) != 32:
            raise BackupError(
                f"backup key from {self.source or 'input'}: expected 32 bytes, "
                f"got {len(self.secret)}"
            )

    @property
    def key_id(self) -> str:
        return key_id_of(self.secret)

    @property
    def age_secret(self) -> bytes:
        """The X25519 identity new sets are encrypted to (HKDF'd from an older raw key, so
        that key is never used by two algorithms)."""
        if self.age_identity:
            return self.secret
        return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_AGE_INFO).derive(
            self.secret
        )

    @classmethod
    def from_text(cls, text: bytes | str, source: str) -> BackupKey:
        """An age identity (``AGE-SECRET-KEY-1…``, as age-keygen writes it, comments and
        all), 32 raw bytes, or their base64 (whitespace around it ignored)."""
        raw = text.encode() if isinstance(text, str) else text
        if len(raw) == 32:
            return cls(raw, source)
        try:
            identity = age_format.parse_identity(raw.decode("ascii"))
        except UnicodeDecodeError:
            identity = None
        except age_format.AgeError as exc:
            raise BackupError(f"backup key from {source}: {exc}") from None
        if identity is not None:
            return cls(identity, source, age_identity=True)
        try:
            return cls(base64.b64decode(raw.strip(), validate=True), source)
        except (binascii.Error, ValueError):
            raise BackupError(f"backup key from {source}: not 32 bytes nor their base64") from None

    @classmethod
    def from_file(cls, path: Path) -> BackupKey:
        """The key in ``path``; refused when group or others may read it."""
        try:
            mode = path.stat().st_mode
            if mode & 0o077:
                raise BackupError(
                    f"backup key file {path} has mode {mode & 0o777:04o}: "
                    "others may read it; chmod 600 it"
                )
            return cls.from_text(path.read_bytes(), str(path))
        except OSError as exc:
            raise BackupError(f"backup key file {path}: {exc.strerror}") from None


_MAC_INFO = b"memops backup manifest authentication v1"
_AGE_INFO = b"memops backup age identity v1"
LEGACY_ALGORITHM = ALGORITHM  # the chunked AES-256-GCM format of sets written before age
AGE_ALGORITHM = "age"


def encrypting_reader(source: Readable, key: BackupKey) -> age_format.EncryptingReader:
    """A reader of ``source`` encrypted for ``key``, in the age format."""
    return age_format.EncryptingReader(source, age_format.public_key(key.age_secret))


def stored_size(plain_size: int) -> int:
    """How many bytes an encrypted file of ``plain_size`` bytes takes (the free-space check)."""
    return age_format.encrypted_size(plain_size)


def decrypting_reader(source: Readable, key: BackupKey, *, name: str) -> Readable:
    """A reader of the plaintext of ``source``, in either format (told by its first bytes)."""
    head = read_full(source, len(_MAGIC))
    joined = _Prefixed(head, source)
    if head == _MAGIC:
        return DecryptingReader(joined, key, name=name)
    if age_format.INTRO.startswith(head):
        return age_format.DecryptingReader(joined, key.age_secret, name=name)
    raise BackupError(f"{name}: neither an age file nor a memops encrypted one (damaged?)")


class _Prefixed:
    """``head`` (already read from ``rest``), then the rest of ``rest``."""

    def __init__(self, head: bytes, rest: Readable) -> None:
        self._head, self._rest = head, rest

    def read(self, size: int = -1) -> bytes:
        if not self._head:
            return self._rest.read(size)
        if size < 0:
            data, self._head = self._head + self._rest.read(), b""
            return data
        data, self._head = self._head[:size], self._head[size:]
        return data


MAC_PREFIX = "hmac-sha256:"


def manifest_mac(key: BackupKey, body_digest: bytes) -> str:
    """The authentication of a manifest: HMAC-SHA256, under a key derived from the backup
    key (HKDF, so the AES key itself never authenticates), of the sha256 of its body.

    Only a holder of the backup key can make one: a set written by anyone else who can
    write to the store (a plain sha256 anyone can recompute) is told apart."""
    mac_key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_MAC_INFO).derive(
        key.secret
    )
    return MAC_PREFIX + hmac.new(mac_key, body_digest, hashlib.sha256).hexdigest()


def load_key(
    settings: Mapping[str, object] | None = None, environ: Mapping[str, str] | None = None
) -> BackupKey | None:
    """The key named by the inventory (``backup_encryption_key_file``) or ``MEMOPS_BACKUP_KEY``.

    None when neither is set: the set is not encrypted.
    """
    environ = os.environ if environ is None else environ
    path = (settings or {}).get(KEY_FILE_VAR)
    if path:
        return BackupKey.from_file(Path(str(path)).expanduser())
    text = environ.get(KEY_ENV)
    if text:
        return BackupKey.from_text(text, f"${KEY_ENV}")
    return None


def encrypted_size(plain_size: int, chunk_size: int = DEFAULT_CHUNK) -> int:
    """How many bytes ``plain_size`` bytes take encrypted (for the free-space check)."""
    chunks = max(1, -(-plain_size // chunk_size))
    return _HEADER.size + plain_size + chunks * _TAG


def _associated(header: bytes, index: int, last: bool) -> bytes:
    return header + struct.pack(">QB", index, 1 if last else 0)


def _nonce(prefix: bytes, index: int) -> bytes:
    return prefix + struct.pack(">I", index)


class _ChunkReader:
    """A readable stream (``read(n)``) over chunks that a subclass produces."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._done = False

    def _next_chunk(self) -> bytes | None:  # None: the stream has ended
        raise NotImplementedError

    def read(self, size: int = -1) -> bytes:
        while not self._done and (size < 0 or len(self._buffer) < size):
            chunk = self._next_chunk()
            if chunk is None:
                self._done = True
            else:
                self._buffer += chunk
        if size < 0:
            size = len(self._buffer)
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data

    def readable(self) -> bool:
        return True


class EncryptingReader(_ChunkReader):
    """Reads as the ciphertext of ``source``; counts and hashes the plaintext on the way."""

    def __init__(self, source: Readable, key: BackupKey, *, chunk_size: int = DEFAULT_CHUNK):
        super().__init__()
        self._source = source
        self._aead = AESGCM(key.secret)
        self._prefix = os.urandom(8)
        self._header = _HEADER.pack(_MAGIC, bytes.fromhex(key.key_id), chunk_size, self._prefix)
        self._chunk_size = chunk_size
        self._index = -1
        self._ahead: bytes | None = read_full(source, chunk_size)
        self.plain_size = 0
        self._plain_hash = hashlib.sha256()

    @property
    def plain_sha256(self) -> str:
        return self._plain_hash.hexdigest()

    def _next_chunk(self) -> bytes | None:
        if self._index == -1:
            self._index = 0
            return self._header
        if self._ahead is None:
            return None
        current = self._ahead
        following = read_full(self._source, self._chunk_size)
        last = not following
        self._plain_hash.update(current)
        self.plain_size += len(current)
        sealed = self._aead.encrypt(
            _nonce(self._prefix, self._index), current, _associated(self._header, self._index, last)
        )
        self._index += 1
        self._ahead = None if last else following
        return sealed


class DecryptingReader(_ChunkReader):
    """Reads as the plaintext of the encrypted ``source``; BackupError when it is not intact.

    ``name`` names the file in messages. A file sealed with another key is
    RestoreRefused naming both key ids, before any chunk is opened.
    """

    def __init__(self, source: Readable, key: BackupKey, *, name: str):
        super().__init__()
        self._source = source
        self._name = name
        header = read_full(source, _HEADER.size)
        if len(header) < _HEADER.size:
            raise BackupError(f"{name}: truncated: no complete encryption header")
        magic, raw_id, chunk_size, self._prefix = _HEADER.unpack(header)
        if magic != _MAGIC or not 0 < chunk_size <= 1 << 30:
            raise BackupError(f"{name}: not a memops encrypted file (or its header is damaged)")
        if raw_id.hex() != key.key_id:
            raise RestoreRefused(
                f"{name} is encrypted with key {raw_id.hex()}; the key given is {key.key_id}"
            )
        self._header = header
        self._aead = AESGCM(key.secret)
        self._frame = chunk_size + _TAG
        self._index = 0
        self._ahead = read_full(source, self._frame)
        self._finished = False

    def _next_chunk(self) -> bytes | None:
        if self._finished:
            return None
        frame = self._ahead
        if len(frame) < _TAG:
            raise BackupError(f"{self._name}: truncated in chunk {self._index}")
        self._ahead = read_full(self._source, self._frame) if len(frame) == self._frame else b""
        last = not self._ahead
        nonce = _nonce(self._prefix, self._index)
        try:
            plain = self._aead.decrypt(nonce, frame, _associated(self._header, self._index, last))
        except InvalidTag:
            raise BackupError(self._damage(nonce, frame, last)) from None
        self._index += 1
        self._finished = last
        return plain

    def _damage(self, nonce: bytes, frame: bytes, last: bool) -> str:
        """Why chunk ``self._index`` failed: cut short after it, or altered."""
        if last:
            try:
                self._aead.decrypt(nonce, frame, _associated(self._header, self._index, False))
                return f"{self._name}: truncated after chunk {self._index}"
            except InvalidTag:
                pass
        return (
            f"{self._name}: chunk {self._index} failed authentication "
            "(damaged, altered or cut short)"
        )
