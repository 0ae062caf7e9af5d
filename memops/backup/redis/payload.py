"""The string a Redis DUMP payload holds, and the key ids of the sealed values among them.

A namespace export reads every key as ``DUMP`` payload: the object's RDB
serialization, then the RDB version (2 bytes) and a CRC64 (8 bytes). For a
string (type byte 0) it is the RDB string encoding: a length and the bytes, an
integer (``"123"`` stored as a number), or LZF-compressed bytes (Redis
compresses a string longer than 20 bytes when that saves at least 4; sealed
values, mostly random base64, nearly never are, plain JSON values often are).
``dump_string`` turns any of them back into the value, so the export can
count the key ids of the sealed values that pass through it
(``KeyIdTally``) without another read of the server.
"""

from __future__ import annotations

import re
import struct
from collections import Counter

from memops.errors import Failed
from memops.memory.values import key_id_of_value

STRING_TYPE = 0
FOOTER = 10  # u16 RDB version | u64 CRC64
_ENCVAL = 3
_INTS = {0: struct.Struct("<b"), 1: struct.Struct("<h"), 2: struct.Struct("<i")}
_LZF = 3
_OPENING = frozenset(b"{ \t\n\r")  # what a JSON object's text may start with
# A string payload whose text may open a JSON object: ``string_at(objects=True)``'s test as one
# regular expression (a C-level match per value on the export's hot path): type 0, then a
# length and the text's first byte, or LZF's marker, two lengths, a control byte and the
# first literal byte. Matching it is necessary for a value to name a key id, not enough.
_LENGTH = rb"(?:[\x00-\x3f]|[\x40-\x7f].|\x80.{4}|\x81.{8})"
_MAY_OPEN_AN_OBJECT = re.compile(
    rb"\x00(?:" + _LENGTH + rb"|\xc3" + _LENGTH + _LENGTH + rb".)[{ \t\n\r]", re.DOTALL
)


class PayloadError(Failed, ValueError):
    """A payload that is not a well-formed RDB string."""


def _length(data: bytes, at: int) -> tuple[int, int, bool]:
    """(length or encoding, position after it, whether it is a special encoding)."""
    first = data[at]
    kind = first >> 6
    if kind == 0:
        return first & 0x3F, at + 1, False
    if kind == 1:
        return ((first & 0x3F) << 8) | data[at + 1], at + 2, False
    if kind == _ENCVAL:
        return first & 0x3F, at + 1, True
    if first == 0x80:
        return int.from_bytes(data[at + 1 : at + 5], "big"), at + 5, False
    if first == 0x81:
        return int.from_bytes(data[at + 1 : at + 9], "big"), at + 9, False
    raise PayloadError(f"unknown RDB length byte {first:#x}")


def lzf_decompress(data: bytes, size: int) -> bytes:
    """liblzf's ``lzf_decompress``: ``size`` bytes out of ``data``; PayloadError when bad."""
    out = bytearray()
    at, end = 0, len(data)
    while at < end:
        ctrl = data[at]
        if ctrl < 32:  # a literal run of ctrl + 1 bytes
            after = at + ctrl + 2
            if after > end:
                raise PayloadError("LZF literal run past the end")
            out += data[at + 1 : after]
            at = after
            continue
        length = ctrl >> 5
        if length == 7:
            at += 1
            length += data[at]
        back = ((ctrl & 0x1F) << 8) + data[at + 1] + 1
        at += 2
        length += 2
        if back > len(out):
            raise PayloadError("LZF back reference before the start")
        if back >= length:
            start = len(out) - back
            out += out[start : start + length]
        else:  # the copy overlaps what it writes: the last `back` bytes, repeated
            out += (out[-back:] * (length // back + 1))[:length]
    if len(out) != size:
        raise PayloadError(f"LZF gave {len(out)} bytes, expected {size}")
    return bytes(out)


def dump_string(payload: bytes) -> bytes | None:
    """The string a DUMP reply holds; None for another type or a malformed payload."""
    return string_at(payload, 0, len(payload) - FOOTER)


def string_at(data: bytes, start: int, end: int, *, objects: bool = False) -> bytes | None:
    """The string of the DUMP payload (less its footer) at ``data[start:end]``, or None.

    ``objects``: only a string that may be a JSON object (its first byte ``{`` or JSON
    whitespace); others are None without being decompressed. LZF output starts with a
    literal run, so its first byte is in the clear.
    """
    if end - start < 2 or data[start] != STRING_TYPE:
        return None
    try:
        value, at, special = _length(data, start + 1)
        if not special:
            if at + value > end or (objects and (value == 0 or data[at] not in _OPENING)):
                return None
            return data[at : at + value]
        if value in _INTS:
            (number,) = _INTS[value].unpack_from(data, at)
            return None if objects else str(number).encode("ascii")
        if value == _LZF:
            packed, at, _ = _length(data, at)
            size, at, _ = _length(data, at)
            if at + packed > end or (objects and data[at + 1] not in _OPENING):
                return None
            return lzf_decompress(data[at : at + packed], size)
    except (IndexError, struct.error, PayloadError):
        return None
    return None


class KeyIdTally:
    """How many sealed values name each key id, counted as DUMP payloads pass through."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def add(self, keys: list[bytes], contents: list[bytes]) -> None:
        """Count the values of an export's batch: each content is key | payload less footer.

        On the export's hot path: a value that cannot hold a JSON object is passed over by
        one regular-expression match, before any decoding.
        """
        counts, may_open = self.counts, _MAY_OPEN_AN_OBJECT.match
        for key, content in zip(keys, contents, strict=True):
            if not may_open(content, len(key)):
                continue
            text = string_at(content, len(key), len(content), objects=True)
            key_id = key_id_of_value(text) if text is not None else None
            if key_id is not None:
                counts[key_id] += 1

    def to_dict(self) -> dict[str, int]:
        return dict(sorted(self.counts.items()))
