"""Benchmark: Redis namespace export and restore against BGSAVE and RDB load. Prints one JSON.

    .venv/bin/python benchmarks/redis_namespace.py [--keys 1000000] [--port 38600]

Private redis-servers (ScratchRedis, ports --port .. --port+2, state under
/tmp/bench-redis/) hold N keys of tenant A and N keys of tenant B, 100-byte
values. References measured in the same run (issue #9, "Benchmarks"):
- export: keys/s of BGSAVE of the same 2N keys; a concurrent client pings the
  server during the export (its p50/p99 latency is reported);
- restore: keys/s at which redis-server loads an RDB of A's N keys at start-up
  (the log's "DB loaded from disk: X seconds").
Goals: export_ratio >= 0.35 with PING p99 < 20 ms, restore_ratio >= 0.5.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import sys
import threading
import time
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_DIR))

from memops.backup.redis.ns_export import export_namespace  # noqa: E402
from memops.backup.redis.ns_restore import restore_namespace  # noqa: E402
from memops.backup.redis.scratch import ScratchRedis  # noqa: E402
from memops.backup.redis.server import info, server_version, wait_for  # noqa: E402
from memops.clients import redis_client  # noqa: E402
from memops.model import redis_key  # noqa: E402

STATE_DIR = Path("/tmp/bench-redis")
PREFIX = "bench"
TENANT_A, TENANT_B = "tenant-a", "tenant-b"
VALUE_BYTES = 100
FILL_BATCH = 50_000

# Server-side fill: one call writes ARGV[2]..ARGV[3] keys ``ARGV[1] .. i`` (fast, no RESP per key).
_FILL = """
local value = string.rep('v', tonumber(ARGV[4]))
for i = tonumber(ARGV[2]), tonumber(ARGV[3]) do
  redis.call('SET', ARGV[1] .. i, value)
end
return 1
"""


def fill(client, tenant: str, keys: int) -> None:
    head = redis_key(PREFIX, tenant, "fact", "0")[:-1]  # ``bench:memory:A:fact:`` + id
    sha = client.script_load(_FILL)
    for start in range(0, keys, FILL_BATCH):
        end = min(keys, start + FILL_BATCH) - 1
        client.evalsha(sha, 0, head, start, end, VALUE_BYTES)


def timed_bgsave(client) -> float:
    """Seconds from BGSAVE until INFO persistence counts one more save (``rdb_saves``)."""
    saves = info(client, "persistence")["rdb_saves"]
    started = time.perf_counter()
    client.execute_command("BGSAVE")

    def done() -> bool | None:
        fields = info(client, "persistence")
        if fields.get("rdb_bgsave_in_progress") != "0" or fields.get("rdb_saves") == saves:
            return None
        if fields.get("rdb_last_bgsave_status") != "ok":
            raise SystemExit("benchmark: BGSAVE failed; see the Redis log")
        return True

    wait_for("BGSAVE", done, timeout_s=600, interval_s=0.005)
    return time.perf_counter() - started


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    index = max(0, min(len(ordered) - 1, round(fraction * len(ordered)) - 1))
    return ordered[index]


class Pinger(threading.Thread):
    """PING in a loop over its own connection (1 ms apart) and keep each latency in ms."""

    def __init__(self, server: ScratchRedis) -> None:
        super().__init__(daemon=True)
        self.client = redis_client(server.target, single_connection=True)
        self.latencies_ms: list[float] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            started = time.perf_counter()
            self.client.ping()
            self.latencies_ms.append((time.perf_counter() - started) * 1000)
            time.sleep(0.001)


def rate(keys: int, seconds: float) -> float:
    return round(keys / seconds) if seconds > 0 else 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=1_000_000, help="keys per tenant")
    parser.add_argument("--port", type=int, default=38600, help="first of three ports")
    args = parser.parse_args()
    n = args.keys
    shutil.rmtree(STATE_DIR, ignore_errors=True)
    source = ScratchRedis(args.port, STATE_DIR / "source")
    target = ScratchRedis(args.port + 1, STATE_DIR / "target")
    loader = ScratchRedis(args.port + 2, STATE_DIR / "loader")
    dump = STATE_DIR / "tenant-a.ns"
    result: dict[str, object] = {"keys_per_tenant": n, "value_bytes": VALUE_BYTES}
    try:
        source.start()
        client = redis_client(source.target, timeout_s=60)
        versions = {"redis": server_version(client)}

        # An RDB of A's keys alone: the restore reference loads it at start-up.
        fill(client, TENANT_A, n)
        timed_bgsave(client)
        loader.data_dir.mkdir(parents=True)
        shutil.copyfile(source.data_dir / "dump.rdb", loader.data_dir / "dump.rdb")

        fill(client, TENANT_B, n)
        if client.dbsize() != 2 * n:
            raise SystemExit(f"benchmark: fill wrote {client.dbsize()} keys, not {2 * n}")
        bgsave_s = timed_bgsave(client)

        pinger = Pinger(source)
        pinger.start()
        started = time.perf_counter()
        digest, size = export_namespace(client, PREFIX, TENANT_A, dump, meta=versions)
        export_s = time.perf_counter() - started
        pinger.stop.set()
        pinger.join()
        if digest.count != n:
            raise SystemExit(f"benchmark: export holds {digest.count} keys, not {n}")
        pings = pinger.latencies_ms
        client.close()
        source.stop()

        target.start()
        target_client = redis_client(target.target, timeout_s=60)
        started = time.perf_counter()
        restored = restore_namespace(target_client, dump, versions, prefix=PREFIX, tenant=TENANT_A)
        restore_s = time.perf_counter() - started
        if restored.restored != n or target_client.dbsize() != n:
            raise SystemExit(f"benchmark: restore wrote {target_client.dbsize()} keys, not {n}")
        target_client.close()
        target.stop()

        started = time.perf_counter()
        loader.start(timeout_s=600)
        start_s = time.perf_counter() - started
        loader_client = redis_client(loader.target)
        loaded = int(info(loader_client, "persistence").get("rdb_last_load_keys_loaded", "-1"))
        loader_client.close()
        loader.stop()
        match = re.search(r"DB loaded from disk: ([0-9.]+) seconds", loader.log_path.read_text())
        if match is None or loaded != n:
            raise SystemExit(f"benchmark: the loader loaded {loaded} keys, not {n}")
        load_s = float(match.group(1))
    finally:
        for server in (source, target, loader):
            server.kill()
        shutil.rmtree(STATE_DIR, ignore_errors=True)  # also when a step failed

    bgsave_rate, export_rate = rate(2 * n, bgsave_s), rate(n, export_s)
    load_rate, restore_rate = rate(n, load_s), rate(n, restore_s)
    result.update(
        {
            "bgsave_keys": 2 * n,
            "bgsave_s": round(bgsave_s, 3),
            "bgsave_keys_per_s": bgsave_rate,
            "export_keys": digest.count,
            "export_bytes": size,
            "export_s": round(export_s, 3),
            "export_keys_per_s": export_rate,
            "export_ratio": round(export_rate / bgsave_rate, 3),
            "export_ratio_goal": 0.35,
            "ping_count": len(pings),
            "ping_p50_ms": round(statistics.median(pings), 2) if pings else None,
            "ping_p99_ms": round(percentile(pings, 0.99), 2) if pings else None,
            "ping_max_ms": round(max(pings), 2) if pings else None,
            "ping_p99_goal_ms": 20,
            "rdb_load_keys": loaded,
            "rdb_load_s": load_s,
            "rdb_load_start_to_ready_s": round(start_s, 3),
            "rdb_load_keys_per_s": load_rate,
            "restore_keys": restored.restored,
            "restore_s": round(restore_s, 3),
            "restore_keys_per_s": restore_rate,
            "restore_ratio": round(restore_rate / load_rate, 3),
            "restore_ratio_goal": 0.5,
        }
    )
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
