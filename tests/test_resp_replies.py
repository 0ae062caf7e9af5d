"""RawReplies without a server: replies split anywhere across reads, and error replies."""

from __future__ import annotations

import pytest
import redis

from memops.backup.redis.resp import RawReplies


class Trickle:
    """A socket stand-in whose every recv returns ``step`` bytes."""

    def __init__(self, data: bytes, step: int) -> None:
        self.data, self.step = data, step

    def recv(self, _size: int) -> bytes:
        chunk, self.data = self.data[: self.step], self.data[self.step :]
        return chunk


STREAM = (
    b"+OK\r\n+QUEUED\r\n+QUEUED\r\n+QUEUED\r\n+QUEUED\r\n"
    b"*4\r\n:-1\r\n$7\r\npay\r\nl\x00\r\n:1700000000000\r\n$-1\r\n"
    b"*2\r\n$1\r\n0\r\n*0\r\n"
)


@pytest.mark.parametrize("step", [1, 2, 3, 7, 1000])
def test_replies_split_anywhere_read_the_same(step: int) -> None:
    replies = RawReplies(Trickle(STREAM, step))  # type: ignore[arg-type]
    replies.expect(b"+OK\r\n" + b"+QUEUED\r\n" * 4)
    assert replies.number() == 4
    assert replies.values(4) == [-1, b"pay\r\nl\x00", 1_700_000_000_000, None]
    assert replies.number() == 2
    assert replies.bulk() == b"0"
    assert replies.values(replies.number()) == []


def test_an_error_reply_raises_with_its_message() -> None:
    queued_error = b"+OK\r\n+QUEUED\r\n-ERR unknown command\r\n-EXECABORT Transaction discarded\r\n"
    replies = RawReplies(Trickle(queued_error, 4))  # type: ignore[arg-type]
    with pytest.raises(redis.ResponseError, match="unknown command"):
        replies.expect(b"+OK\r\n" + b"+QUEUED\r\n" * 2)
    replies = RawReplies(Trickle(b"*2\r\n:1\r\n-WRONGTYPE no\r\n", 3))  # type: ignore[arg-type]
    replies.number()
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        replies.values(2)


def test_a_closed_connection_raises() -> None:
    replies = RawReplies(Trickle(b"$10\r\nshort", 100))  # type: ignore[arg-type]
    with pytest.raises(redis.ConnectionError):
        replies.bulk()


RESP3_STREAM = (
    b"+OK\r\n+QUEUED\r\n+QUEUED\r\n+QUEUED\r\n+QUEUED\r\n"
    b"*4\r\n:-2\r\n_\r\n:1700000000000\r\n$3\r\nabc\r\n"  # a key gone since SCAN: null
    b"|1\r\n+ttl\r\n:3600\r\n*2\r\n$1\r\n0\r\n*1\r\n$3\r\nkey\r\n"  # an attribute first
    b">2\r\n$10\r\ninvalidate\r\n_\r\n:5\r\n"  # a push, then the reply
    b"#t\r\n,1.5\r\n(12345678901234567890\r\n=8\r\ntxt:abcd\r\n"
    b"%1\r\n+k\r\n~2\r\n:1\r\n:2\r\n!9\r\nERR blob!\r\n"
)


@pytest.mark.parametrize("step", [1, 2, 5, 1000])
def test_resp3_replies_read_whole_split_anywhere(step: int) -> None:
    replies = RawReplies(Trickle(RESP3_STREAM, step))  # type: ignore[arg-type]
    replies.expect(b"+OK\r\n" + b"+QUEUED\r\n" * 4)
    assert replies.number() == 4
    assert replies.values(4) == [-2, None, 1_700_000_000_000, b"abc"]
    assert replies.number() == 2  # past the attribute
    assert replies.bulk() == b"0"
    assert replies.values(replies.number()) == [b"key"]
    assert replies.number() == 5  # past the push
    assert replies.reply() is True
    assert replies.reply() == 1.5
    assert replies.reply() == 12345678901234567890
    assert replies.bulk() == b"abcd"
    assert replies.reply() == {b"k": [1, 2]}
    with pytest.raises(redis.ResponseError, match="ERR blob!"):
        replies.reply()


def test_a_resp3_null_is_none_everywhere() -> None:
    replies = RawReplies(Trickle(b"_\r\n_\r\n*2\r\n_\r\n:7\r\n", 2))  # type: ignore[arg-type]
    assert replies.bulk() is None
    assert replies.number() == -1  # an aborted EXEC
    assert replies.number() == 2
    assert replies.values(2) == [None, 7]


def test_a_value_of_the_wrong_type_is_named_not_dropped() -> None:
    replies = RawReplies(Trickle(b"*1\r\n,2.5\r\n", 3))  # type: ignore[arg-type]
    replies.number()
    with pytest.raises(redis.ResponseError, match="where a number or bulk was due"):
        replies.values(1)
