"""Every benchmark runs at a tiny size, so none of them rots between measurements.

Each is the real script (`benchmarks/…`) printing its one JSON object, whose figures are
ratios against a reference measured in the same run; the figures themselves are measured at
full size by hand (closing notes), never asserted here: this only proves that each benchmark
still runs, reports its ratios, and leaves nothing behind. A script in benchmarks/ without a
tiny run below fails `test_every_benchmark_has_a_tiny_run`.

The Redis and PostgreSQL ones run private servers (ScratchRedis on free ports, a scratch
cluster on 31502 plus MEMOPS_SCRATCH_OFFSET); tenant_restore.py and deploy.py deploy the
benchmark inventory (instance memops-bench, ports 28xxx, benchmarks/inventories/bench). All
of them start real services, so they are `integration` tests (`invoke test --fast` skips them).
"""

from __future__ import annotations

import glob
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from memops.paths import PROJECT_DIR

BENCHMARKS = PROJECT_DIR / "benchmarks"
BENCH_NAMES = ("memops-bench", "memops-backup-bench")  # the instance, the backup schedule
# Where a deploy writes on this machine: searched by name, independently of deploy.TRACES.
SYSTEM_ROOTS = ("/etc", "/run", "/var/lib", "/var/log", "/opt", "/srv")


@dataclass(frozen=True)
class Tiny:
    args: list[str]
    ratios: list[str]
    ports: int = 0  # free consecutive ports it needs (--port FIRST), for private servers
    scratch: tuple[str, ...] = ()  # globs of its private servers' files, gone when it ends
    stack: bool = False  # deploys the bench inventory
    timeout: float = 300
    env: dict[str, str] = field(default_factory=dict)
    elsewhere: str = ""  # the test that runs it instead (on a stack it needs and shares)


TINY = {
    "redis_namespace.py": Tiny(
        ["--keys", "3000"],
        ["export_ratio", "restore_ratio"],
        ports=3,
        scratch=("/tmp/bench-redis",),
    ),
    "key_rotation.py": Tiny(
        ["--keys", "3000", "--batch", "500"],
        ["rotate_ratio"],
        ports=1,
        scratch=("/tmp/bench-rotation",),
    ),
    "redis_clear.py": Tiny(
        ["--keys", "3000", "--runs", "1"],
        ["speedup_min"],
        ports=1,
        scratch=("/tmp/bench-redis-clear",),
    ),
    "postgres_backup.py": Tiny(
        ["--rows", "2000"],
        ["backup_time_ratio", "restore_time_ratio"],
        scratch=(
            "/tmp/memops-bkpg-bench*",
            "/tmp/bkpg-bench-*",
            "/etc/postgresql/15/memops-bkpg-bench*",
        ),
    ),
    # Deploys the bench stack when it is not up (tests: from nothing), then restores a tenant.
    "tenant_restore.py": Tiny(
        ["--size", "200", "--others", "3", "--other-size", "20"],
        ["restore_vs_load"],
        stack=True,
        timeout=900,
    ),
    # A lab of one host (every group on it): lab up twice, deploy, re-deploy, lab down.
    "lab.py": Tiny(["--hosts", "1"], ["redeploy_ratio", "lab_up_ratio"], timeout=1800),
    # Tears down what tenant_restore.py left, deploys from nothing, again (only probed) and
    # once more with --full, probes, and tears the instance down.
    "deploy.py": Tiny(
        ["--strategies", "mitogen", "--probe-runs", "3"],
        ["redeploy_ratio", "full_redeploy_ratio"],
        stack=True,
        timeout=900,
    ),
    # Needs a replicated lab stack: run on the multihost tests' own, --runs 1, both tiers.
    "failover.py": Tiny(
        [],
        ["ratio_max"],
        elsewhere="tests/multihost/test_replicated_redis.py::"
        "test_the_failover_benchmark_runs_at_a_tiny_size",
    ),
}


def test_every_benchmark_has_a_tiny_run() -> None:
    scripts = {path.name for path in BENCHMARKS.glob("*.py") if not path.name.startswith("_")}
    assert scripts == set(TINY), "a benchmark without a tiny run here rots unnoticed"
    for tiny in TINY.values():  # a tiny run made elsewhere names a test that exists
        if tiny.elsewhere:
            module, _, test = tiny.elsewhere.partition("::")
            assert f"def {test}(" in (PROJECT_DIR / module).read_text(encoding="utf-8")


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


def listening(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def run_benchmark(script: str, *args: str, timeout: float = 300) -> tuple[dict[str, Any], float]:
    """Run one benchmark; its JSON object and its wall time (it must exit 0)."""
    started = time.monotonic()
    run = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), *args],
        cwd=PROJECT_DIR,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    seconds = time.monotonic() - started
    assert run.returncode == 0, f"{script}: {run.stderr[-3000:]}"
    result = json.loads(run.stdout[run.stdout.index("{") :])
    assert isinstance(result, dict) and result
    return result, seconds


def bench_traces() -> list[str]:
    """Paths on this machine named after the bench instance or its backup schedule."""
    found = []
    for root in SYSTEM_ROOTS:
        for directory, dirs, files in os.walk(root):
            found += [
                os.path.join(directory, name)
                for name in dirs + files
                if any(bench in name for bench in BENCH_NAMES)
            ]
    return found


def bench_processes() -> list[str]:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            argv = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "memops-bench" in argv:
            found.append(f"{cmdline.parent.name}: {argv.strip()}")
    return found


def bench_stack_leftovers() -> dict[str, list[str]]:
    sys.path.insert(0, str(PROJECT_DIR))
    from benchmarks.deploy import PORTS

    clusters = subprocess.run(["pg_lsclusters"], capture_output=True, text=True, check=False)
    return {
        "paths": bench_traces(),
        "state": [str(p) for p in [PROJECT_DIR / ".state" / "bench"] if p.exists()],
        "clusters": [
            line
            for line in (clusters.stdout + clusters.stderr).splitlines()
            if "memops-bench" in line
        ],
        "listeners": [str(port) for port in PORTS if listening(port)],
        "processes": bench_processes(),
    }


def nothing(leftovers: dict[str, list[str]]) -> bool:
    return not any(leftovers.values())


@pytest.fixture(scope="module")
def bench_stack() -> Iterator[None]:
    """The bench instance's lifetime in this module: whatever happens, it is torn down."""
    yield
    subprocess.run(
        [sys.executable, str(BENCHMARKS / "deploy.py"), "--teardown"],
        cwd=PROJECT_DIR,
        capture_output=True,
        timeout=300,
        check=False,
    )


@pytest.mark.integration
@pytest.mark.parametrize("script", [name for name, tiny in TINY.items() if not tiny.elsewhere])
def test_a_benchmark_runs_at_a_tiny_size(script: str, request: pytest.FixtureRequest) -> None:
    tiny = TINY[script]
    args = list(tiny.args)
    first = free_ports(tiny.ports) if tiny.ports else 0
    if tiny.ports:
        args += ["--port", str(first)]
    if tiny.stack:
        request.getfixturevalue("bench_stack")

    result, seconds = run_benchmark(script, *args, timeout=tiny.timeout)

    for name in tiny.ratios:
        assert isinstance(result[name], int | float) and result[name] > 0, (name, result)
    print(f"{script} {' '.join(args)}: {seconds:.1f} s\n{json.dumps(result)}")
    assert not [path for pattern in tiny.scratch for path in glob.glob(pattern)]
    assert not [port for port in range(first, first + tiny.ports) if listening(port)]
    if script == "deploy.py":  # it ends with its teardown: nothing of the bench stack is left
        assert nothing(leftovers := bench_stack_leftovers()), leftovers


@pytest.mark.integration
def test_the_bench_teardown_leaves_nothing_behind(bench_stack: None) -> None:
    """After any run (or none), --teardown leaves no service, cluster, cron file or config."""
    result, _seconds = run_benchmark("deploy.py", "--teardown")
    assert result["leftovers"] == []
    assert nothing(leftovers := bench_stack_leftovers()), leftovers
    assert not Path("/etc/cron.d/memops-backup-bench").exists()
    assert not Path("/etc/postgresql/15/memops-bench").exists()
