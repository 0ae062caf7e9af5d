"""The HTTP layer: a threading stdlib server that turns sockets into ``Request``s."""

from __future__ import annotations

import logging
import socket
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from qdrant_standin.app import App
from qdrant_standin.protocol import Request, Response

ACCESS_LOG = logging.getLogger("qdrant_standin.access")
MAX_BODY_BYTES = 2 * 1024**3


class StandinServer(ThreadingHTTPServer):
    daemon_threads = True
    app: App  # set once storage is open, before serving starts


class StandinServer6(StandinServer):
    address_family = socket.AF_INET6


class Handler(BaseHTTPRequestHandler):
    server: StandinServer
    protocol_version = "HTTP/1.1"  # keep-alive, as qdrant-client's connection pool expects

    def version_string(self) -> str:
        return "qdrant-standin"

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def do_PATCH(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def _serve(self) -> None:
        url = urlsplit(self.path)
        body = self._read_body()
        if body is None:
            return
        request = Request(
            method=self.command,
            path=url.path or "/",
            query=dict(parse_qsl(url.query, keep_blank_values=True)),
            headers={key.lower(): value for key, value in self.headers.items()},
            body=body,
        )
        response = self.server.app.handle(request)
        self._send(response)
        # one line per request, like actix's logger; headers (and so the API key) never appear
        ACCESS_LOG.info(
            '%s "%s %s %s" %d %d "%s" %.6f',
            self.client_address[0],
            self.command,
            self.path,
            self.request_version,
            response.status,
            len(response.body),
            self.headers.get("User-Agent", "-"),
            request.elapsed(),
        )

    def _read_body(self) -> bytes | None:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked()
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            self.send_error(413, "Request body too large")
            return None
        return self.rfile.read(length) if length else b""

    def _read_chunked(self) -> bytes:
        chunks = []
        while True:
            size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(chunks)
            chunks.append(self.rfile.read(size))
            self.rfile.readline()

    def _send(self, response: Response) -> None:
        try:
            self.send_response(response.status)
            self.send_header("Content-Type", response.content_type)
            self.send_header("Content-Length", str(len(response.body)))
            for name, value in response.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(response.body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def log_request(self, code: Any = "-", size: Any = "-") -> None:
        """Silenced: ``_serve`` writes the access line itself."""

    def log_message(self, format: str, *args: Any) -> None:
        ACCESS_LOG.warning("%s %s", self.client_address[0], format % args)


def make_server(host: str, port: int) -> StandinServer:
    """Bind ``host:port`` (IPv6 when the host is an IPv6 address); OSError when taken."""
    server_class = StandinServer6 if ":" in host else StandinServer
    return server_class((host, port), Handler)
