"""Raw pipelined RESP on a connection redis-py opened (so AUTH, TLS and timeouts are its own).

redis-py spends microseconds per command building and parsing; a bulk restore
sends millions of commands whose replies are one-line ``+OK``. ``RawPipe`` writes
pre-built RESP bytes on the socket and counts reply lines in bulk, keeping one
batch in flight so the server works while the caller builds the next one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import redis


def command(*args: bytes) -> bytes:
    """One command as RESP bytes."""
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        out.append(b"$%d\r\n%b\r\n" % (len(arg), arg))
    return b"".join(out)


class RawPipe:
    """Send batches of commands whose replies are single lines (``+OK`` or ``-ERR``)."""

    def __init__(self, client: redis.Redis) -> None:
        self._pool = client.connection_pool
        self._conn = self._pool.get_connection()
        self._sock = self._conn._get_socket()  # connected and authenticated by redis-py
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
