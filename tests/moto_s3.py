"""An S3 endpoint for tests: moto in server mode over TLS on 127.0.0.1.

The certificate is made for the test (CN and subjectAltName 127.0.0.1, any port), and
boto3 trusts it through AWS_CA_BUNDLE, as it would a private S3 (MinIO, Ceph) in
production. ``env`` is the environment a CI ops job would pass memops; ``client`` talks to
moto directly, so a test can see what memops left even while memops' endpoint is down.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3

START_TIMEOUT_S = 30


def wait_for_port(port: int, what: str, timeout_s: float = START_TIMEOUT_S) -> None:
    """Return once 127.0.0.1:``port`` accepts connections; fail the test after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        assert time.monotonic() < deadline, f"{what} did not start on port {port}"
        time.sleep(0.1)


def tls_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key, valid for a day."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    openssl = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
    subject = ["-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"]
    subprocess.run(
        [*openssl, "-keyout", str(key), "-out", str(cert), *subject],
        check=True,
        capture_output=True,
    )
    return cert, key


@dataclass(frozen=True)
class MotoS3:
    port: int
    cert: Path
    bucket: str
    prefix: str

    def env(self, port: int | None = None) -> dict[str, str]:
        """memops' S3 settings, as environment variables; ``port``: reach moto through another."""
        return {
            "AWS_ENDPOINT_URL_S3": f"https://127.0.0.1:{port or self.port}",
            "AWS_CA_BUNDLE": str(self.cert),
            "AWS_ACCESS_KEY_ID": "memops-test",
            "AWS_SECRET_ACCESS_KEY": "memops-test-secret",
            "AWS_REGION": "us-east-1",
            "MEMOPS_BACKUP_S3_BUCKET": self.bucket,
            "MEMOPS_BACKUP_S3_PREFIX": self.prefix,
        }

    def client(self) -> Any:
        """A boto3 client of moto itself (never through a proxy a test may kill)."""
        env = self.env()
        return boto3.client(
            "s3",
            endpoint_url=env["AWS_ENDPOINT_URL_S3"],
            verify=env["AWS_CA_BUNDLE"],
            aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
            region_name=env["AWS_REGION"],
        )


@contextlib.contextmanager
def moto_server(directory: Path, port: int, *, bucket: str, prefix: str) -> Iterator[MotoS3]:
    """moto_server over TLS on 127.0.0.1:``port`` with ``bucket`` created; stopped afterwards."""
    cert, key = tls_certificate(directory)
    moto = str(Path(sys.executable).with_name("moto_server"))
    server = subprocess.Popen(
        [moto, "-H", "127.0.0.1", "-p", str(port), "-c", str(cert), "-k", str(key)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, "moto_server")
        running = MotoS3(port, cert, bucket, prefix)
        running.client().create_bucket(Bucket=bucket)
        yield running
    finally:
        server.terminate()
        server.wait(timeout=30)
