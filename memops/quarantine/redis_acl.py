"""Redis ACL key patterns that keep the app user away from quarantined namespaces.

Redis 7.0 key patterns only allow: a user may touch a key when some ``~pattern``
matches it. The app user normally has ``~{prefix}:*``. To block namespaces, the
patterns become a union of globs whose language is ``{prefix}:*`` minus every
quarantined namespace's keys, built on a trie of the namespaces' heads
``{prefix}:memory:{tenant}:`` (as bytes: Redis compares bytes). At each trie node
``s`` the keys that leave the trie there are allowed with ``s[other bytes]*``.

A key ``{head}{type}:{id}`` (type and id without ':') belongs to the namespace, so
below a head only remainders with two or more colons are allowed; they belong to
other namespaces (``acme:eu``'s keys below ``acme``'s head). Globs cannot say "no
colon in the rest", so a remainder under a head with at most one colon is blocked
even when it is not a well-formed key.

Redis refuses key patterns that contain whitespace (ACL LIST could not be read
back), so NUL and the whitespace bytes (tab, LF, VT, FF, CR, space) are one symbol
here, written as a class of the other bytes' complement: quarantining
``with space`` also blocks ``with\tspace``. Every widening errs on the side of
blocking: the patterns never allow a key of a quarantined namespace.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from memops.model import namespace_head

_GLOB_SPECIAL = frozenset(b"\\*?[]")
_COLON = ord(":")
# NUL and the bytes Redis counts as spaces: one symbol, written as _BLANK.
BLANKS = frozenset(b"\x00\t\n\x0b\x0c\r ")
_BLANK = 0x20
# One byte of BLANKS, without a blank byte in the pattern.
_BLANK_CLASS = b"[^\x01-\x08\x0e-\x1f!-\x7f\x80-\xff]"
_SYMBOLS = frozenset(range(256)) - BLANKS | {_BLANK}


def canonical(text: bytes) -> bytes:
    """``text`` with every blank byte as a space: what the patterns tell apart."""
    return bytes(_BLANK if c in BLANKS else c for c in text)


def head(prefix: str, tenant: str) -> bytes:
    """The bytes every key of the namespace starts with."""
    return namespace_head(prefix, tenant).encode()


def _literal(text: bytes) -> bytes:
    out = []
    for c in text:
        if c == _BLANK:
            out.append(_BLANK_CLASS)
        else:
            out.append(b"\\" + bytes([c]) if c in _GLOB_SPECIAL else bytes([c]))
    return b"".join(out)


def _classes(excluded: Iterable[int]) -> list[bytes]:
    """Classes that together match one byte whose symbol is not in ``excluded``.

    A positive class of byte ranges (no blank byte is an end of a range, no range
    starts with a backslash or ']', none crosses from 0x7f to 0x80: Redis reads
    pattern bytes as signed chars), plus the blank class when blanks are allowed.
    """
    allowed = sorted(_SYMBOLS - set(excluded) - {_BLANK})
    runs: list[list[int]] = []
    for c in allowed:
        # Redis compares range ends as (signed) chars: no range crosses 0x7f..0x80
        if runs and runs[-1][1] == c - 1 and c != 0x80:
            runs[-1][1] = c
        else:
            runs.append([c, c])
    parts = []
    for lo, hi in runs:
        while lo <= hi and lo in b"\\]^-":  # cannot start a range: write it alone
            parts.append(b"\\" + bytes([lo]))
            lo += 1
        if lo > hi:
            continue
        parts.append(b"\\" + bytes([lo]) if lo == hi else bytes([lo]) + b"-" + bytes([hi]))
    out = [b"[" + b"".join(parts) + b"]"] if parts else []
    if _BLANK not in set(excluded):
        out.append(_BLANK_CLASS)
    return out


@dataclass
class _Node:
    children: dict[int, _Node] = field(default_factory=dict)
    terminal: bool = False


def base_patterns(prefix: str) -> list[bytes]:
    """What the role gives the app user when nothing is quarantined."""
    return [_literal(prefix.encode() + b":") + b"*"]


def allowed_patterns(prefix: str, tenants: Iterable[str]) -> list[bytes]:
    """The app user's key patterns (without ``~``) with ``tenants`` quarantined, sorted."""
    root_text = prefix.encode() + b":"
    root = _Node()
    for tenant in set(tenants):
        node = root
        for char in canonical(head(prefix, tenant))[len(root_text) :]:
            node = node.children.setdefault(char, _Node())
        node.terminal = True
    if not root.children:
        return base_patterns(prefix)
    out: list[bytes] = []
    _walk(root, root_text, None, out)
    return sorted(set(out))


def _walk(node: _Node, text: bytes, colons: int | None, out: list[bytes]) -> None:
    """Emit the patterns for keys that leave the trie at ``node``.

    ``colons`` counts the colons since the deepest head above (None: no head
    above yet, everything that leaves is allowed); from 2 on, anything goes.
    """
    if node.terminal:
        colons = 0
    here = _literal(text)
    need = 0 if colons is None or colons >= 2 else 2 - colons
    if need == 0 and not _has_head_below(node):
        out.append(here + b"*")
        return
    if need == 0:
        out.append(here)  # the key that ends here
        out += [here + cls + b"*" for cls in _classes(node.children)]
    else:
        # leave with a byte that is neither a child nor ':' and find `need` colons later,
        # or leave with ':' (when it is no child) and find one fewer
        tail = b"*:" * need + b"*"
        out += [here + cls + tail for cls in _classes([*node.children, _COLON])]
        if _COLON not in node.children:
            out.append(here + b":" + b"*:" * (need - 1) + b"*")
    for char, child in node.children.items():
        step = colons if colons is None or char != _COLON else min(colons + 1, 2)
        _walk(child, text + bytes([char]), step, out)


def _has_head_below(node: _Node) -> bool:
    return any(child.terminal or _has_head_below(child) for child in node.children.values())


def key_allowed(key: bytes, prefix: str, tenants: Iterable[str]) -> bool:
    """The reference: what ``allowed_patterns`` must allow (for tests and dry runs)."""
    if not key.startswith(prefix.encode() + b":"):
        return False
    key = canonical(key)
    for tenant in tenants:
        start = canonical(head(prefix, tenant))
        if key.startswith(start) and key[len(start) :].count(b":") <= 1:
            return False
    return True


def config_token(rule: bytes) -> str:
    """``rule`` as one double-quoted argument of a redis.conf line (non-printables as \\xHH)."""
    body = "".join(chr(c) if 0x20 < c < 0x7F and c not in b'"\\' else f"\\x{c:02x}" for c in rule)
    return f'"{body}"'
