"""The age file format (age-encryption.org/v1), X25519 recipients, as streams.

Backup files are encrypted in age's format so that an operator whose memops is broken
opens them with the standard ``age`` tool (``age -d -i <identity>``, Debian's ``age``
package): docs/restore-by-hand.md. Written here on ``cryptography``'s primitives rather
than a binding, because memops streams files of many GB through pull readers (the
store reads ``read(n)`` from them).

The format, as the specification (https://age-encryption.org/v1) sets it:

- a header: ``age-encryption.org/v1``, one stanza per recipient (X25519: an ephemeral
  share, and the 16-byte file key sealed with ChaCha20-Poly1305 under a key HKDF'd from
  the shared secret), then ``---`` and an HMAC of the header under a key HKDF'd from
  the file key;
- a payload: a 16-byte nonce, then 64 KiB chunks, each sealed with ChaCha20-Poly1305
  under a key HKDF'd from the file key and that nonce; a chunk's nonce is its 11-byte
  counter and a last-chunk flag, so a cut, reordered or extended stream fails.

Identities and recipients are Bech32 strings (``AGE-SECRET-KEY-1…``, ``age1…``), as
``age-keygen`` writes them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from memops.backup.artifacts import BackupError, RestoreRefused


class Readable(Protocol):
    """What the readers here read from: a file, a stream, or another of these readers."""

    def read(self, size: int = -1, /) -> bytes: ...


INTRO = b"age-encryption.org/v1\n"
CHUNK = 64 * 1024
_TAG = 16
_STANZA_INFO = b"age-encryption.org/v1/X25519"
IDENTITY_HRP = "age-secret-key-"
RECIPIENT_HRP = "age"


class AgeError(BackupError):
    """An age file or identity that cannot be read; the message names what is wrong."""


# -- keys --------------------------------------------------------------------------------


def public_key(secret: bytes) -> bytes:
    """The X25519 public key (the recipient) of a 32-byte identity."""
    return (
        X25519PrivateKey.from_private_bytes(secret)
        .public_key()
        .public_bytes(Encoding.Raw, PublicFormat.Raw)
    )


def identity_text(secret: bytes) -> str:
    """``AGE-SECRET-KEY-1…``: the identity as ``age -i`` reads it."""
    return bech32_encode(IDENTITY_HRP, secret).upper()


def recipient_text(secret: bytes) -> str:
    """``age1…``: the identity's recipient, as ``age -r`` takes it."""
    return bech32_encode(RECIPIENT_HRP, public_key(secret))


def parse_identity(text: str) -> bytes | None:
    """The secret of the first ``AGE-SECRET-KEY-1…`` line (``#`` lines skipped), or None when
    the text holds no identity line; AgeError when it holds a damaged one."""
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if not line.upper().startswith("AGE-SECRET-KEY-1"):
            return None
        hrp, data = bech32_decode(line)
        if hrp != IDENTITY_HRP or len(data) != 32:
            raise AgeError("not an age X25519 identity (AGE-SECRET-KEY-1…, 32 bytes)")
        return data
    return None


# -- writing -----------------------------------------------------------------------------


def _hkdf(ikm: bytes, salt: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=info).derive(ikm)


def _b64(data: bytes) -> bytes:
    return base64.b64encode(data).rstrip(b"=")


def _unb64(text: bytes) -> bytes:
    if b"=" in text or len(text) % 4 == 1:
        raise AgeError("age header: bad base64")
    return base64.b64decode(text + b"=" * (-len(text) % 4), validate=True)


def _payload_nonce(counter: int, last: bool) -> bytes:
    return counter.to_bytes(11, "big") + (b"\x01" if last else b"\x00")


def header_for(recipient: bytes, file_key: bytes) -> bytes:
    """The header of a file for one X25519 recipient (``recipient``: its public key)."""
    ephemeral = X25519PrivateKey.generate()
    share = ephemeral.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    shared = ephemeral.exchange(X25519PublicKey.from_public_bytes(recipient))
    wrap = _hkdf(shared, share + recipient, _STANZA_INFO)
    body = ChaCha20Poly1305(wrap).encrypt(b"\x00" * 12, file_key, None)
    head = INTRO + b"-> X25519 " + _b64(share) + b"\n" + _b64(body) + b"\n---"
    mac = hmac.new(_hkdf(file_key, b"", b"header"), head, hashlib.sha256).digest()
    return head + b" " + _b64(mac) + b"\n"


HEADER_SIZE = len(header_for(public_key(b"\x01" * 32), b"\x00" * 16))  # fixed for X25519


def encrypted_size(plain_size: int) -> int:
    """The size of an age file of ``plain_size`` bytes for one X25519 recipient."""
    chunks = max(1, -(-plain_size // CHUNK))
    return HEADER_SIZE + 16 + plain_size + chunks * _TAG


class EncryptingReader:
    """Reads as the age file of ``source`` for ``recipient``; hashes the plaintext on the way."""

    def __init__(self, source: Readable, recipient: bytes) -> None:
        self._source = source
        file_key = os.urandom(16)
        nonce = os.urandom(16)
        self._aead = ChaCha20Poly1305(_hkdf(file_key, nonce, b"payload"))
        self._buffer = bytearray(header_for(recipient, file_key) + nonce)
        self._counter = 0
        self._ahead: bytes | None = read_full(source, CHUNK)
        self.plain_size = 0
        self._plain_hash = hashlib.sha256()

    @property
    def plain_sha256(self) -> str:
        return self._plain_hash.hexdigest()

    def read(self, size: int = -1) -> bytes:
        while self._ahead is not None and (size < 0 or len(self._buffer) < size):
            current = self._ahead
            following = read_full(self._source, CHUNK)
            last = not following
            self._plain_hash.update(current)
            self.plain_size += len(current)
            nonce = _payload_nonce(self._counter, last)
            self._buffer += self._aead.encrypt(nonce, current, None)
            self._counter += 1
            self._ahead = None if last else following
        size = len(self._buffer) if size < 0 else size
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data

    def readable(self) -> bool:
        return True


# -- reading -----------------------------------------------------------------------------


class DecryptingReader:
    """Reads as the plaintext of the age file ``source``, opened with ``identity``.

    A file for other recipients is RestoreRefused; a damaged header or chunk, a cut or
    extended stream is AgeError naming ``name`` and where.
    """

    def __init__(self, source: Readable, identity: bytes, *, name: str) -> None:
        self._source, self._name = source, name
        file_key = self._file_key(identity)
        nonce = read_full(source, 16)
        if len(nonce) != 16:
            raise AgeError(f"{name}: truncated after the age header")
        self._aead = ChaCha20Poly1305(_hkdf(file_key, nonce, b"payload"))
        self._counter = 0
        self._buffer = bytearray()
        self._ahead = read_full(source, CHUNK + _TAG)
        self._finished = False

    def _file_key(self, identity: bytes) -> bytes:
        lines = [self._line()]
        if lines[0] + b"\n" != INTRO:
            raise AgeError(f"{self._name}: not an age file (or its header is damaged)")
        stanzas: list[tuple[list[bytes], bytes]] = []
        while True:
            line = self._line()
            lines.append(line)
            if line.startswith(b"---"):
                break
            if not line.startswith(b"-> "):
                raise AgeError(f"{self._name}: age header: unexpected line")
            args, body = line[3:].split(b" "), b""
            while True:  # a body's lines are 64 columns but the last
                part = self._line()
                lines.append(part)
                body += part
                if len(part) < 64:
                    break
            stanzas.append((args, body))
        found = None
        ours = public_key(identity)
        for args, body in stanzas:
            if args[:1] == [b"X25519"] and len(args) == 2:
                found = found or _unwrap(identity, ours, _unb64(args[1]), _unb64(body))
        if found is None:
            raise RestoreRefused(f"{self._name}: encrypted for another key than the one given")
        head = b"\n".join(lines)[: -len(lines[-1])] + b"---"
        mac = hmac.new(_hkdf(found, b"", b"header"), head, hashlib.sha256).digest()
        if not hmac.compare_digest(_b64(mac), lines[-1][4:]):
            raise AgeError(f"{self._name}: age header MAC mismatch (damaged or edited)")
        return found

    def _line(self) -> bytes:
        line = bytearray()
        while len(line) < 1024:
            byte = self._source.read(1)
            if not byte:
                raise AgeError(f"{self._name}: truncated in the age header")
            if byte == b"\n":
                return bytes(line)
            line += byte
        raise AgeError(f"{self._name}: age header line too long")

    def read(self, size: int = -1) -> bytes:
        while not self._finished and (size < 0 or len(self._buffer) < size):
            self._buffer += self._next_chunk()
        size = len(self._buffer) if size < 0 else size
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data

    def _next_chunk(self) -> bytes:
        frame = self._ahead
        if len(frame) < _TAG:
            raise AgeError(f"{self._name}: truncated in chunk {self._counter}")
        self._ahead = read_full(self._source, CHUNK + _TAG) if len(frame) == CHUNK + _TAG else b""
        last = not self._ahead
        try:
            plain = self._aead.decrypt(_payload_nonce(self._counter, last), frame, None)
        except InvalidTag:
            where = "the last chunk" if last else f"chunk {self._counter}"
            raise AgeError(
                f"{self._name}: {where} fails authentication (damaged, cut or extended)"
            ) from None
        if last and not plain and self._counter > 0:
            raise AgeError(f"{self._name}: an empty last chunk (not a valid age file)")
        self._counter += 1
        self._finished = last
        return plain

    def readable(self) -> bool:
        return True


def _unwrap(identity: bytes, ours: bytes, share: bytes, body: bytes) -> bytes | None:
    """The file key in an X25519 stanza for ``identity``, or None when it is someone else's."""
    if len(share) != 32 or len(body) != 32:
        return None
    shared = X25519PrivateKey.from_private_bytes(identity).exchange(
        X25519PublicKey.from_public_bytes(share)
    )
    try:
        return ChaCha20Poly1305(_hkdf(shared, share + ours, _STANZA_INFO)).decrypt(
            b"\x00" * 12, body, None
        )
    except InvalidTag:
        return None


def read_full(source: Readable, size: int) -> bytes:
    """Exactly ``size`` bytes, or fewer only at the end of the stream."""
    parts, left = [], size
    while left > 0:
        part = source.read(left)
        if not part:
            break
        parts.append(part)
        left -= len(part)
    return b"".join(parts)


# -- Bech32 (BIP 173), as age's keys use it ----------------------------------------------

_CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_GENERATOR = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)


def _polymod(values: list[int]) -> int:
    check = 1
    for value in values:
        top = check >> 25
        check = (check & 0x1FFFFFF) << 5 ^ value
        for bit, generator in enumerate(_GENERATOR):
            check ^= generator if (top >> bit) & 1 else 0
    return check


def _expand(hrp: str) -> list[int]:
    return [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]


def _regroup(data: bytes | list[int], source: int, target: int, pad: bool) -> list[int]:
    acc, bits, out, top = 0, 0, [], (1 << target) - 1
    for value in data:
        acc = (acc << source) | value
        bits += source
        while bits >= target:
            bits -= target
            out.append((acc >> bits) & top)
    if pad and bits:
        out.append((acc << (target - bits)) & top)
    elif not pad and (bits >= source or (acc << (target - bits)) & top):
        raise AgeError("bech32: bad padding")
    return out


def bech32_encode(hrp: str, data: bytes) -> str:
    words = _regroup(data, 8, 5, True)
    check = _polymod([*_expand(hrp), *words, 0, 0, 0, 0, 0, 0]) ^ 1
    words += [(check >> 5 * (5 - i)) & 31 for i in range(6)]
    return hrp + "1" + "".join(_CHARSET[w] for w in words)


def bech32_decode(text: str) -> tuple[str, bytes]:
    if text.lower() != text and text.upper() != text:
        raise AgeError("bech32: mixed case")
    text = text.lower()
    hrp, _, rest = text.rpartition("1")
    if not hrp or len(rest) < 6 or any(c not in _CHARSET for c in rest):
        raise AgeError("bech32: malformed")
    words = [_CHARSET.index(c) for c in rest]
    if _polymod([*_expand(hrp), *words]) != 1:
        raise AgeError("bech32: checksum mismatch")
    return hrp, bytes(_regroup(words[:-6], 5, 8, False))
