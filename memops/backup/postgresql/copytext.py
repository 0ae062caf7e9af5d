"""PostgreSQL's COPY text format, as far as picking one tenant's rows out of a dump needs.

A COPY text line is the row's fields joined by tabs; inside a field, a backslash
and the control characters backspace, form feed, newline, carriage return, tab
and vertical tab are written as two-character escapes (PostgreSQL's
``CopyAttributeOutText``), every other byte as it is. So a tenant's rows are the
lines whose tenant field equals the tenant name escaped the same way: a byte
comparison, with no pattern that could match more (glob or SQL metacharacters in
a name are plain bytes here).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

_ESCAPES = {
    "\\": "\\\\",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\v": "\\v",
}


def escape(value: str) -> bytes:
    """``value`` as COPY text writes it in a field (UTF-8, the dumps' encoding)."""
    return "".join(_ESCAPES.get(char, char) for char in value).encode("utf-8")


def copy_target(statement: str) -> tuple[str, list[str]]:
    """``COPY public.memory_items (id, tenant_id) FROM STDIN`` -> ("memory_items", [columns])."""
    head, _, rest = statement.removeprefix("COPY ").partition(" (")
    columns = rest.rpartition(") FROM")[0]
    return _unquote(head.rpartition(".")[2]), [_unquote(c) for c in columns.split(", ")]


def _unquote(name: str) -> str:
    if len(name) >= 2 and name[0] == name[-1] == '"':
        return name[1:-1].replace('""', '"')
    return name


def tenant_filter(columns: Sequence[str], tenant: str) -> Callable[[bytes], bool]:
    """A test of one COPY line: does its ``tenant_id`` field hold exactly ``tenant``?"""
    position = list(columns).index("tenant_id")
    wanted = escape(tenant)

    def matches(line: bytes) -> bool:
        fields = line.rstrip(b"\n").split(b"\t", position + 1)
        return len(fields) > position and fields[position] == wanted

    return matches
