"""The Redis benchmarks run at a tiny size, so none of them rots between measurements.

Each is the real script (`benchmarks/…`), on its own free ports, printing its one JSON
object; the figures themselves are measured at full size by hand (closing notes), never
asserted here: this only proves the benchmark still runs and reports its ratio.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys

import pytest

from memops.paths import PROJECT_DIR

pytestmark = pytest.mark.integration


def free_ports(count: int) -> int:
    """The first of ``count`` consecutive ports that are free now."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            first = probe.getsockname()[1]
        if first + count > 65535:
            continue
        try:
            held = []
            for port in range(first, first + count):
                sock = socket.socket()
                held.append(sock)
                sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            for sock in held:
                sock.close()
        return first
    raise RuntimeError("no free run of ports")


@pytest.mark.parametrize(
    ("script", "args", "ratios"),
    [
        ("redis_namespace.py", ["--keys", "3000"], ["export_ratio", "restore_ratio"]),
        ("key_rotation.py", ["--keys", "3000", "--batch", "500"], []),
        ("redis_clear.py", ["--keys", "3000", "--runs", "1"], []),
    ],
)
def test_a_redis_benchmark_runs_at_a_tiny_size(
    script: str, args: list[str], ratios: list[str]
) -> None:
    run = subprocess.run(
        [
            sys.executable,
            str(PROJECT_DIR / "benchmarks" / script),
            *args,
            "--port",
            str(free_ports(3)),
        ],
        cwd=PROJECT_DIR,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    result = json.loads(run.stdout[run.stdout.index("{") :])
    assert isinstance(result, dict) and result
    for name in ratios:
        assert result[name] > 0, result
