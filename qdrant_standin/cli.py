"""Command line and process life: Qdrant's flags, exit codes, signals.

Exit codes: 0 after SIGTERM/SIGINT (data flushed), 1 when the port or the
storage cannot be used, 2 when the config is missing or invalid. Every error
is one line on stderr.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType

from qdrant_standin import VERSION
from qdrant_standin.app import App
from qdrant_standin.config import ConfigError, Settings, load_settings
from qdrant_standin.context import Context
from qdrant_standin.metrics import RequestMetrics
from qdrant_standin.server import StandinServer, make_server
from qdrant_standin.snapshots import SnapshotDir
from qdrant_standin.storage import Store

LOG = logging.getLogger("qdrant_standin")
PROG = "qdrant-standin"


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings(args.config_path, os.environ)
    except ConfigError as exc:
        return _fail(2, str(exc))
    _setup_logging(settings.log_level)

    try:
        server = make_server(settings.host, settings.http_port)
    except OSError as exc:
        return _fail(1, f"cannot listen on {settings.host}:{settings.http_port}: {_reason(exc)}")
    try:
        settings.snapshots_path.mkdir(parents=True, exist_ok=True)
        store = Store(settings.storage_path)
    except (OSError, RuntimeError) as exc:
        server.server_close()
        return _fail(1, f"cannot open storage {settings.storage_path}: {_reason(exc)}")

    ctx = Context(settings, store, SnapshotDir(settings.snapshots_path), RequestMetrics())
    server.app = App(ctx)
    _stop_on_signals(server)
    _log_start(settings, server.server_address[1])
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
        store.close()
    LOG.info("Qdrant stand-in stopped, storage closed")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="qdrant", description="memops' Qdrant stand-in: Qdrant's REST API on local storage"
    )
    parser.add_argument("--config-path", type=Path, help="Qdrant config file (YAML)")
    parser.add_argument(
        "--disable-telemetry", action="store_true", help="accepted; the stand-in sends none"
    )
    parser.add_argument("--version", action="version", version=f"qdrant-standin {VERSION}")
    return parser


def _stop_on_signals(server: StandinServer) -> None:
    def stop(signum: int, frame: FrameType | None) -> None:
        LOG.info("received %s, shutting down", signal.Signals(signum).name)
        # shutdown() waits for serve_forever() to return: it must not run on this thread
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)


def _setup_logging(level: int) -> None:
    formatter = logging.Formatter(
        "%(asctime)s.%(msecs)03dZ %(levelname)5s %(name)s: %(message)s", "%Y-%m-%dT%H:%M:%S"
    )
    formatter.converter = time.gmtime
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def _log_start(settings: Settings, port: int) -> None:
    LOG.info(
        "Qdrant stand-in %s: storage %s, snapshots %s, API key %s, JWT RBAC %s",
        VERSION,
        settings.storage_path,
        settings.snapshots_path,
        "required" if settings.api_key else "not set",
        "on" if settings.jwt_rbac else "off",
    )
    LOG.info("Qdrant HTTP listening on %d", port)


def _fail(code: int, message: str) -> int:
    print(f"{PROG}: {' '.join(message.split())}", file=sys.stderr)
    return code


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__
