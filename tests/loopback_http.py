"""Serve a fake HTTP service on a free loopback port, for probe tests that need one."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TypeVar

Handler = TypeVar("Handler", bound=BaseHTTPRequestHandler)


@contextmanager
def serve(base: type[Handler], **settings: object) -> Iterator[type[Handler]]:
    """A subclass of ``base`` with ``settings`` and a fresh ``requests`` list, served;
    its ``url`` attribute is set to where it listens."""
    handler = type("Handler", (base,), {"requests": [], **settings})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    handler.url = f"http://127.0.0.1:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    try:
        yield handler
    finally:
        server.shutdown()
        server.server_close()
