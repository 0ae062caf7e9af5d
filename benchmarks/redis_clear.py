"""Benchmark: hard-rebuild clear of a Redis namespace against redis-cli --scan | xargs unlink.

    .venv/bin/python benchmarks/redis_clear.py [--keys 1000000] [--runs 3] [--port 38620]

A private redis-server (ScratchRedis on --port, state under /tmp/bench-redis-clear/)
holds N keys of tenant A and N keys of tenant B, 100-byte values, filled once by a
server-side script and saved to an RDB; every timed clear starts from a restart on
that RDB. Per run, on the same data (issue #10, "Benchmarks"):
- reference: ``redis-cli --scan --pattern 'bench:memory:tenant-a:*' | xargs -n 1000
  redis-cli unlink``;
- memops: ``memops.rebuild.redis_clear.clear_namespace``;
a concurrent client pings the server during each (p50/p99 reported), and the server's
CPU seconds (INFO cpu) show how much of each run was the server's own work: on a shared
machine the wall time swings with the load, the CPU seconds much less. Prints one JSON.
Goal: speedup (reference seconds / memops seconds) >= 3 with PING p99 < 20 ms.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_DIR))

from benchmarks.redis_namespace import Pinger, fill, percentile  # noqa: E402
from memops.backup.redis.scratch import ScratchRedis  # noqa: E402
from memops.backup.redis.server import info  # noqa: E402
from memops.clients import redis_client  # noqa: E402
from memops.model import namespace_pattern  # noqa: E402
from memops.rebuild.redis_clear import (  # noqa: E402
    BUDGET_MS,
    MAX_KEYS_PER_CALL,
    SCAN_COUNT,
    clear_namespace,
)

STATE_DIR = Path("/tmp/bench-redis-clear")
PREFIX = "bench"
TENANT_A, TENANT_B = "tenant-a", "tenant-b"


def xargs_unlink(port: int) -> None:
    pattern = namespace_pattern(PREFIX, TENANT_A)
    cli = shutil.which("redis-cli") or "redis-cli"
    scan = subprocess.Popen(
        [cli, "-p", str(port), "--scan", "--pattern", pattern], stdout=subprocess.PIPE
    )
    subprocess.run(
        ["xargs", "-n", "1000", cli, "-p", str(port), "unlink"],
        stdin=scan.stdout,
        stdout=subprocess.DEVNULL,
        check=True,
    )
    if scan.wait() != 0:
        raise SystemExit("benchmark: redis-cli --scan failed")


def server_cpu_s(client) -> float:
    """CPU seconds redis-server has used (its main thread and the rest): INFO cpu."""
    fields = info(client, "cpu")
    return float(fields["used_cpu_user"]) + float(fields["used_cpu_sys"])


def timed(server: ScratchRedis, n: int, clear) -> dict[str, float]:
    """Restart on the RDB (2N keys), run ``clear`` with a pinger; seconds and PING latencies."""
    server.start(timeout_s=600)
    client = redis_client(server.target, timeout_s=60)
    if client.dbsize() != 2 * n:
        raise SystemExit(f"benchmark: the RDB loaded {client.dbsize()} keys, not {2 * n}")
    pinger = Pinger(server)
    pinger.start()
    time.sleep(0.2)  # the pinger's baseline
    cpu_before = server_cpu_s(client)
    started = time.perf_counter()
    clear(client)
    seconds = time.perf_counter() - started
    cpu_s = server_cpu_s(client) - cpu_before
    pinger.stop.set()
    pinger.join()
    left = client.dbsize()
    client.close()
    server.stop()
    if left != n:
        raise SystemExit(f"benchmark: {left} keys left after the clear, not {n}")
    pings = pinger.latencies_ms
    return {
        "s": round(seconds, 3),
        "server_cpu_s": round(cpu_s, 3),
        "ping_p50_ms": round(statistics.median(pings), 2),
        "ping_p99_ms": round(percentile(pings, 0.99), 2),
        "ping_max_ms": round(max(pings), 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=1_000_000, help="keys per tenant")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--port", type=int, default=38620)
    parser.add_argument("--count", type=int, default=SCAN_COUNT, help="SCAN COUNT")
    parser.add_argument("--max-keys", type=int, default=MAX_KEYS_PER_CALL)
    parser.add_argument("--budget-ms", type=float, default=BUDGET_MS)
    parser.add_argument("--skip-reference", action="store_true", help="tuning runs only")
    args = parser.parse_args()
    n = args.keys
    shutil.rmtree(STATE_DIR, ignore_errors=True)
    server = ScratchRedis(args.port, STATE_DIR / "server")
    tuning = {"count": args.count, "max_keys": args.max_keys, "budget_ms": args.budget_ms}
    runs = []
    try:
        server.start()
        client = redis_client(server.target, timeout_s=120)
        fill(client, TENANT_A, n)
        fill(client, TENANT_B, n)
        client.save()
        client.close()
        server.stop()

        def memops_clear(client) -> None:
            result = clear_namespace(client, PREFIX, TENANT_A, **tuning)
            if result.unlinked != n:
                raise SystemExit(f"benchmark: the clear unlinked {result.unlinked}, not {n}")
            memops_calls.append(result.calls)

        memops_calls: list[int] = []
        for _ in range(args.runs):
            run: dict[str, object] = {}
            if not args.skip_reference:
                run["xargs"] = timed(server, n, lambda _client: xargs_unlink(args.port))
            run["memops"] = timed(server, n, memops_clear)
            run["memops"]["calls"] = memops_calls[-1]  # type: ignore[index]
            if not args.skip_reference:
                run["speedup"] = round(run["xargs"]["s"] / run["memops"]["s"], 2)  # type: ignore[index]
            runs.append(run)
    finally:
        server.kill()
        shutil.rmtree(STATE_DIR, ignore_errors=True)  # also when a step failed

    memops_s = [r["memops"]["s"] for r in runs]  # type: ignore[index]
    p99 = [r["memops"]["ping_p99_ms"] for r in runs]  # type: ignore[index]
    result: dict[str, object] = {
        "keys_namespace": n,
        "keys_other": n,
        "tuning": tuning,
        "runs": runs,
        "memops_s_median": statistics.median(memops_s),
        "memops_ping_p99_ms_max": max(p99),
        "ping_p99_goal_ms": 20,
        "speedup_goal": 3.0,
    }
    if not args.skip_reference:
        speedups = [r["speedup"] for r in runs]
        result["xargs_s_median"] = statistics.median(r["xargs"]["s"] for r in runs)  # type: ignore[index]
        result["speedup_min"] = min(speedups)
        result["speedup_median"] = statistics.median(speedups)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
