"""Raw pipelined RESP on a connection redis-py opened (so AUTH, TLS and timeouts are its own).

redis-py spends microseconds per command building and parsing; a bulk restore
sends millions of commands whose replies are one-line ``+OK``. ``RawPipe`` writes
pre-built RESP bytes on the socket and counts reply lines in bulk, keeping one
batch in flight so the server works while the caller builds the next one.
``RawReplies`` reads the replies of an export's pipelined commands just as plainly.
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING, Any

from redis import exceptions as redis_exceptions

if TYPE_CHECKING:
    import redis


def command(*args: bytes) -> bytes:
    """One command as RESP bytes."""
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        out.append(b"$%d\r\n%b\r\n" % (len(arg), arg))
    return b"".join(out)


def connected_socket(conn: Any) -> socket.socket:
    """The socket of a redis-py connection it has connected and authenticated."""
    sock = conn._get_socket()
    if sock is None:
        raise ConnectionError("redis-py handed out a connection that is not connected")
    return sock


class RawPipe:
    """Send batches of commands whose replies are single lines (``+OK`` or ``-ERR``)."""

    def __init__(self, client: redis.Redis) -> None:
        self._pool = client.connection_pool
        self._conn = self._pool.get_connection()
        self._sock = connected_socket(self._conn)
        self._pending = 0
        self._tail = b"\n"
        self.errors = 0
        self.first_error = ""

    def send(self, data: bytes, replies: int) -> None:
        """Write a batch, then read the replies of the batch before it."""
        self._sock.sendall(data)
        # A recv may already hold replies of this batch: they count against it.
        self._pending = replies - self._read(self._pending)
        if self._pending < 0:
            raise ConnectionError("more replies than commands: the stream is out of step")

    def finish(self) -> None:
        if self._read(self._pending):
            raise ConnectionError("more replies than commands: the stream is out of step")
        self._pending = 0
        self._pool.release(self._conn)

    def abandon(self) -> None:
        self._conn.disconnect()
        self._pool.release(self._conn)

    def _read(self, replies: int) -> int:
        """Read until ``replies`` reply lines have come; how many more lines came with them."""
        while replies > 0:
            chunk = self._sock.recv(1 << 20)
            if not chunk:
                raise ConnectionError("the server closed the connection")
            replies -= chunk.count(b"\n")
            seen = self._tail + chunk
            if b"\n-" in seen:
                for line in seen.split(b"\n")[1:]:
                    if line.startswith(b"-"):
                        self.errors += 1
                        self.first_error = self.first_error or line.decode("utf-8", "replace")
            self._tail = chunk[-1:]
        return -replies


class RawReplies:
    """Replies read straight off a socket redis-py connected: lines, integers, bulks.

    redis-py 8 speaks RESP3 (``HELLO 3``), so a key that vanished between SCAN and
    its DUMP answers ``_`` (null) rather than RESP2's ``$-1``: both are None here, and
    every other RESP3 type a server may send (booleans, doubles, big numbers, verbatim
    strings, maps, sets; attributes and pushes are skipped) is read by ``reply``.
    An error reply (``-`` or ``!``) raises ``redis.ResponseError``; a closed connection
    ``redis.ConnectionError`` (both ``RedisError``s, as redis-py would raise).
    """

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buffer = b""
        self._at = 0

    def _more(self) -> None:
        chunk = self._sock.recv(1 << 20)
        if not chunk:
            raise redis_exceptions.ConnectionError("the server closed the connection")
        self._buffer = self._buffer[self._at :] + chunk
        self._at = 0

    def line(self) -> bytes:
        """The next reply line without its CRLF; an error reply raises."""
        while (end := self._buffer.find(b"\r\n", self._at)) < 0:
            self._more()
        line = self._buffer[self._at : end]
        self._at = end + 2
        if line[:1] == b"-":
            raise redis_exceptions.ResponseError(line[1:].decode("utf-8", "replace"))
        return line

    def number(self) -> int:
        """An integer reply, or the length of an array (``:n`` / ``*n``); a null is -1."""
        line = self._header()
        return -1 if line[:1] == b"_" else int(line[1:])

    def bulk(self) -> bytes | None:
        """A bulk string (``$``, or RESP3's verbatim ``=``); a null (``$-1``, ``_``) is None."""
        line = self._header()
        if line[:1] == b"_":
            return None
        size = int(line[1:])
        if size < 0:
            return None
        data = self._take(size)
        return data[4:] if line[:1] == b"=" else data  # verbatim: "txt:" before the text

    def reply(self) -> object:
        """Any one reply, RESP2 or RESP3, as Python values (the slow path, for the odd ones)."""
        line = self._header()
        kind, rest = line[:1], line[1:]
        if kind in (b"+",):
            return rest
        if kind in (b":", b"("):
            return int(rest)
        if kind == b"_":
            return None
        if kind == b"#":
            return rest == b"t"
        if kind == b",":
            return float(rest)
        if kind in (b"$", b"="):
            size = int(rest)
            if size < 0:
                return None
            data = self._take(size)
            return data[4:] if kind == b"=" else data
        if kind == b"!":
            raise redis_exceptions.ResponseError(self._take(int(rest)).decode("utf-8", "replace"))
        if kind in (b"*", b"~"):
            size = int(rest)
            return None if size < 0 else [self.reply() for _ in range(size)]
        if kind == b"%":
            return {self._hashable(self.reply()): self.reply() for _ in range(int(rest))}
        raise redis_exceptions.ResponseError(f"unexpected reply {line[:60]!r}")

    @staticmethod
    def _hashable(value: object) -> object:
        return tuple(value) if isinstance(value, list) else value

    def _header(self) -> bytes:
        """The next reply's first line, past any RESP3 attribute (``|``) or push (``>``)."""
        while True:
            line = self.line()
            if line[:1] not in (b"|", b">"):
                return line
            count = int(line[1:])
            for _ in range(2 * count if line[:1] == b"|" else count):
                self.reply()  # an attribute's pairs, or a push's items: not a reply of ours

    def _take(self, size: int) -> bytes:
        """The next ``size`` bytes and the CRLF after them."""
        while len(self._buffer) < self._at + size + 2:
            self._more()
        data = self._buffer[self._at : self._at + size]
        self._at += size + 2
        return data

    def values(self, count: int) -> list[int | bytes | None]:
        """The next ``count`` replies, integers or bulks (nil: None), in one loop.

        The same as ``number``/``bulk`` per reply, without a method call per reply
        (an export reads two replies per key).
        """
        out: list[int | bytes | None] = []
        append, buffer, at = out.append, self._buffer, self._at
        size = len(buffer)
        for _ in range(count):
            while True:
                end = buffer.find(b"\r\n", at)
                if end >= 0:
                    kind = buffer[at]
                    if kind == 58:  # ':' integer
                        append(int(buffer[at + 1 : end]))
                        at = end + 2
                        break
                    if kind == 95:  # '_' RESP3 null: a key gone since SCAN
                        append(None)
                        at = end + 2
                        break
                    if kind != 36:  # not '$' (bulk): an error, or a rarer RESP3 type
                        self._at = at
                        value = self.reply()
                        if not (value is None or isinstance(value, int | bytes)):
                            raise redis_exceptions.ResponseError(
                                f"unexpected reply {value!r:.60} where a number or bulk was due"
                            )
                        append(value)
                        buffer, at, size = self._buffer, self._at, len(self._buffer)
                        break
                    length = int(buffer[at + 1 : end])
                    if length < 0:
                        append(None)
                        at = end + 2
                        break
                    if end + length + 4 <= size:
                        append(buffer[end + 2 : end + 2 + length])
                        at = end + length + 4
                        break
                self._at = at  # the reply is not all here yet
                self._more()
                buffer, at = self._buffer, self._at
                size = len(buffer)
        self._buffer, self._at = buffer, at
        return out

    def expect(self, lines: bytes) -> None:
        """Replies known in advance (``+QUEUED`` after ``+QUEUED``...): one comparison for all.

        The caller has a reply sent after these (``EXEC``'s), so enough bytes always come,
        also when an error reply stands in for one of them; reading line by line then names it.
        """
        while len(self._buffer) < self._at + len(lines):
            self._more()
        if self._buffer.startswith(lines, self._at):
            self._at += len(lines)
            return
        for expected in lines.split(b"\r\n")[:-1]:
            if (line := self.line()) != expected:
                raise redis_exceptions.ResponseError(f"unexpected reply {line[:60]!r}")
