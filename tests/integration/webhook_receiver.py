"""A webhook receiver for Alertmanager notifications, run by the alert drill test.

Records every POST (path, arrival time, JSON body) so the test can wait for
a given alert on a given receiver path and measure when it arrived.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Notification:
    path: str
    received_at: float  # time.monotonic()
    body: dict[str, Any]

    def has(self, alertname: str, status: str) -> bool:
        return any(
            alert.get("labels", {}).get("alertname") == alertname and alert.get("status") == status
            for alert in self.body.get("alerts", [])
        )


class WebhookReceiver:
    def __init__(self, host: str, port: int) -> None:
        self.notifications: list[Notification] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length) or b"{}")
                with receiver._lock:
                    receiver.notifications.append(Notification(self.path, time.monotonic(), body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def wait_for(
        self, alertname: str, status: str, timeout_s: float, since: float = 0.0
    ) -> Notification | None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                for note in self.notifications:
                    if note.received_at >= since and note.has(alertname, status):
                        return note
            time.sleep(0.2)
        return None
