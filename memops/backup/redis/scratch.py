"""A throw-away ``redis-server`` on its own port and directory: drills, tests, benchmarks.

The server reads a generated config file (mode 0600), so a password never
appears in argv. ``start`` returns once the data set is loaded.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from memops.backup.artifacts import BackupError
from memops.deploy.targets import RedisTarget
from memops.files import write_private_atomic


@dataclass
class ScratchRedis:
    port: int
    data_dir: Path
    password: str | None = field(default=None, repr=False)
    config: Sequence[str] = ()  # extra config lines, e.g. ("appendonly yes",)
    process: subprocess.Popen[bytes] | None = None

    @property
    def target(self) -> RedisTarget:
        return RedisTarget(name="scratch", host="127.0.0.1", port=self.port, password=self.password)

    @property
    def log_path(self) -> Path:
        return self.data_dir / "redis.log"

    @property
    def conf_path(self) -> Path:
        return self.data_dir / "redis.conf"

    def start(self, extra_args: Sequence[str] = (), *, timeout_s: float = 120) -> None:
        """Start the server (``extra_args`` after the config file) and wait until it has loaded."""
        binary = shutil.which("redis-server")
        if binary is None:
            raise BackupError("redis-server not found: install redis-server")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        lines = [
            "bind 127.0.0.1",
            f"port {self.port}",
            f'dir "{self.data_dir}"',
            'save ""',
            "daemonize no",
            f'logfile "{self.log_path}"',
            *self.config,
        ]
        if self.password:
            lines.append(f'requirepass "{self.password}"')
        write_private_atomic(self.conf_path, "\n".join(lines) + "\n")
        self.process = subprocess.Popen(
            [binary, str(self.conf_path), *extra_args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self._wait_loaded(timeout_s)

    def _wait_loaded(self, timeout_s: float) -> None:
        import redis

        from memops.clients import redis_client

        deadline = time.monotonic() + timeout_s
        client = redis_client(self.target, timeout_s=2)
        try:
            while True:
                if self.process is not None and self.process.poll() is not None:
                    raise BackupError(
                        f"redis-server on port {self.port} exited with {self.process.returncode}"
                        f"; see {self.log_path}"
                    )
                with contextlib.suppress(redis.ConnectionError, redis.BusyLoadingError):
                    if client.ping():
                        return
                if time.monotonic() > deadline:
                    raise BackupError(f"redis-server on port {self.port} not ready in time")
                time.sleep(0.01)
        finally:
            client.close()

    def stop(self, *, timeout_s: float = 60) -> None:
        """SIGTERM, as a service manager stops it (Redis flushes its AOF first)."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process = None
