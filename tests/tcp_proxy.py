"""A TCP proxy in its own process, for killing an endpoint without losing what is behind it.

``TcpProxy(port, upstream)`` relays 127.0.0.1:port to 127.0.0.1:upstream byte for byte (TLS
passes through untouched). ``kill()`` SIGKILLs it: every connection through it is cut and
the port refuses new ones, as when the endpoint's process dies; the service behind it (moto,
which keeps its state in memory only) stays up for the test to inspect. ``start()`` again
brings the endpoint back on the same port. ``rate`` (bytes per second and connection, client
to upstream) slows uploads down so that a test can act while one is under way.

Run as a script: ``python tcp_proxy.py PORT UPSTREAM_PORT [RATE]``.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from moto_s3 import wait_for_port

BUFFER = 64 * 1024


class TcpProxy:
    def __init__(self, port: int, upstream: int, *, rate: int = 0) -> None:
        self.port, self.upstream, self.rate = port, upstream, rate
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, *, rate: int | None = None) -> None:
        assert self.process is None, "the proxy already runs"
        self.rate = self.rate if rate is None else rate
        argv = [sys.executable, str(Path(__file__)), str(self.port), str(self.upstream)]
        self.process = subprocess.Popen([*argv, str(self.rate)], stdin=subprocess.DEVNULL)
        wait_for_port(self.port, "the TCP proxy")

    def kill(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=30)
            self.process = None

    def __enter__(self) -> TcpProxy:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.kill()


def _pump(source: socket.socket, dest: socket.socket, rate: int) -> None:
    started, sent = time.monotonic(), 0
    with contextlib.suppress(OSError):
        while data := source.recv(BUFFER):
            dest.sendall(data)
            sent += len(data)
            if rate:
                time.sleep(max(0.0, started + sent / rate - time.monotonic()))
    for sock in (dest, source):
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


def _relay(client: socket.socket, server: socket.socket, rate: int) -> None:
    back = threading.Thread(target=_pump, args=(server, client, 0), daemon=True)
    back.start()
    _pump(client, server, rate)
    back.join()
    client.close()
    server.close()


def _serve(port: int, upstream: int, rate: int) -> None:
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(64)
    while True:
        client, _ = listener.accept()
        try:
            server = socket.create_connection(("127.0.0.1", upstream))
        except OSError:
            client.close()
            continue
        threading.Thread(target=_relay, args=(client, server, rate), daemon=True).start()


if __name__ == "__main__":
    _serve(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]) if len(sys.argv) > 3 else 0)
