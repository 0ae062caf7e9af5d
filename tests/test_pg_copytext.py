"""COPY text escaping and header parsing (pure; the round trip with a server is in
tests/test_backup_postgres.py)."""

from __future__ import annotations

from memops.backup.postgresql.copytext import copy_target, escape, tenant_filter


def test_escape_follows_copy_text_rules() -> None:
    assert escape("acme") == b"acme"
    assert escape("a\\b\tc\nd\re\bf\fg\vh") == b"a\\\\b\\tc\\nd\\re\\bf\\fg\\vh"
    assert escape("glob*[x]%_'\"") == b"glob*[x]%_'\""  # metacharacters are plain bytes
    assert escape("\x01") == b"\x01"  # other control characters are written as they are
    assert escape("zürich") == "zürich".encode()


def test_copy_target_reads_table_and_columns() -> None:
    table, columns = copy_target('COPY public.memory_items (id, tenant_id, "odd ""x""") FROM STDIN')
    assert table == "memory_items"
    assert columns == ["id", "tenant_id", 'odd "x"']


def test_tenant_filter_matches_the_whole_field_only() -> None:
    matches = tenant_filter(["id", "tenant_id", "content"], "acme")
    assert matches(b"1\tacme\thello\n")
    assert not matches(b"2\tacme:eu\thello\n")
    assert not matches(b"3\tacm\tacme\n")
    assert not matches(b"4\n")  # too few fields: never a match
    tricky = tenant_filter(["tenant_id", "id"], "a\tb")
    assert tricky(b"a\\tb\t5\n")
    assert not tricky(b"a\tb\t5\n")
