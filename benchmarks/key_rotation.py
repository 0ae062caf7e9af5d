"""Benchmark: keys.rotate of N sealed values against a plain pipelined GET+SET of the same keys.

    .venv/bin/python benchmarks/key_rotation.py [--keys 1000000] [--batch 1000] [--port 38810]

A private redis-server (ScratchRedis, state under /tmp/bench-rotation/) holds N
values sealed with one key (about 200 bytes each, the workload's envelope). The
reference, measured in the same run before and after the rotation (their
mean; two figures far apart mean a busy machine): GET and SET back every key
through pipelines of --batch keys, the key list known in advance (no SCAN, no
crypto). Then the rotation itself (memops.keys.rotation.rotate_values: SCAN, MGET,
open and reseal, one compare-and-set Lua call per batch, a checkpoint per
batch) moves every value to a new key. Goal (issue #10): rotate_ratio >= 0.5.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_DIR))

from memops.backup.redis.scratch import ScratchRedis  # noqa: E402
from memops.clients import redis_client  # noqa: E402
from memops.keys.ring import new_keyring  # noqa: E402
from memops.keys.rotation import rotate_values, start_checkpoint  # noqa: E402
from memops.memory.values import key_id_of_value, sealed_value  # noqa: E402
from memops.model import redis_key  # noqa: E402

STATE_DIR = Path("/tmp/bench-rotation")
PREFIX = "bench"
CONTENT = "user asked about the deployment window and the assistant answered " * 2


def fill(client, ring, keys: int, batch: int) -> list[str]:
    names = [redis_key(PREFIX, f"tenant-{i % 100}", "chat", f"{i:012x}") for i in range(keys)]
    for start in range(0, keys, batch):
        pipe = client.pipeline(transaction=False)
        for name in names[start : start + batch]:
            value = sealed_value(
                CONTENT,
                "2026-01-01T00:00:00+00:00",
                key_name=name,
                key_id=ring.active,
                secret=ring.active_secret,
            )
            pipe.set(name, value, ex=86400)
        pipe.execute()
    return names


def get_set(client, names: list[str], batch: int) -> float:
    started = time.perf_counter()
    for start in range(0, len(names), batch):
        chunk = names[start : start + batch]
        pipe = client.pipeline(transaction=False)
        for name in chunk:
            pipe.get(name)
        values = pipe.execute()
        pipe = client.pipeline(transaction=False)
        for name, value in zip(chunk, values, strict=True):
            pipe.set(name, value, keepttl=True)
        pipe.execute()
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--port", type=int, default=38810)
    args = parser.parse_args()
    shutil.rmtree(STATE_DIR, ignore_errors=True)
    server = ScratchRedis(args.port, STATE_DIR / "redis")
    ring = new_keyring()
    try:
        server.start()
        client = redis_client(server.target, timeout_s=120)
        names = fill(client, ring, args.keys, args.batch)
        before_s = get_set(client, names, args.batch)
        rotated = ring.with_new_key()
        checkpoint = start_checkpoint(rotated.active, rotated, PREFIX)
        started = time.perf_counter()
        done = rotate_values(
            client, rotated, checkpoint, STATE_DIR / "checkpoint.json", batch=args.batch
        )
        rotate_s = time.perf_counter() - started
        after_s = get_set(client, names, args.batch)  # the machine may be shared: twice
        sample = [key_id_of_value(v) for v in client.mget(names[:: max(1, args.keys // 1000)])]
        if done.counts.moved != args.keys or set(sample) != {rotated.active}:
            raise SystemExit(f"benchmark: moved {done.counts.moved} of {args.keys}")
        client.close()
    finally:
        server.kill()
        shutil.rmtree(STATE_DIR, ignore_errors=True)  # the server's files and the checkpoint
    reference_s = (before_s + after_s) / 2
    reference_rate, rotate_rate = args.keys / reference_s, args.keys / rotate_s
    print(
        json.dumps(
            {
                "keys": args.keys,
                "batch": args.batch,
                "get_set_before_s": round(before_s, 3),
                "get_set_after_s": round(after_s, 3),
                "get_set_keys_per_s": round(reference_rate),
                "rotate_s": round(rotate_s, 3),
                "rotate_keys_per_s": round(rotate_rate),
                "rotate_batches": done.batches,
                "rotate_ratio": round(rotate_rate / reference_rate, 3),
                "rotate_ratio_goal": 0.5,
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
