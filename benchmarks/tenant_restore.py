"""Benchmark: restore one tenant (about 10k keys, rows and points) among 100, all three tiers.

    .venv/bin/python benchmarks/tenant_restore.py [--inventory benchmarks/inventories/bench]
        [--size 10000] [--others 99] [--other-size 500]

Runs on a deployed stack: it deploys the inventory first (on a healthy stack only its
probes run; benchmarks/deploy.py --keep leaves the bench one up, and
``benchmarks/deploy.py --teardown`` removes it afterwards). It writes the tenants with
the workload generator (the chosen one last, timed: the reference), takes a namespace
set of the chosen tenant with `invoke backup.create --namespace`, deletes that tenant in
every tier, and times `invoke backup.restore --namespace … --yes`, as an operator types
it. Prints one JSON object; ``restore_vs_load`` is the restore's time over the time it
took to write the same tenant's data in the first place. The restored data is checked
against what was written before it reports.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

PROJECT_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_DIR))

from memops.clients import stack_clients  # noqa: E402
from memops.deploy.inventory import resolve_inventory  # noqa: E402
from memops.deploy.targets import load_targets  # noqa: E402
from memops.ops.deploy import deploy  # noqa: E402
from memops.ops.runner import Context  # noqa: E402
from memops.testing import workload as wl  # noqa: E402

COLLECTION = "bench_tenant_restore"
CHOSEN = "bench-chosen*[tenant]"
INVOKE = str(Path(sys.executable).with_name("invoke"))


def invoke_json(*args: str) -> dict[str, Any]:
    done = subprocess.run(
        [INVOKE, *args, "--json"], cwd=PROJECT_DIR, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"benchmark: invoke {args[0]} failed: {done.stderr.strip()}")
    document: dict[str, Any] = json.loads(done.stdout)
    return document


def write_all(clients: Any, data: wl.Workload) -> None:
    wl.write_redis(clients.redis(), data)
    with clients.postgresql() as conn:
        conn.execute("DELETE FROM memory_items WHERE tenant_id = ANY(%s)", [list(data.tenants)])
        wl.write_postgres(conn, data)
    wl.write_qdrant(clients.qdrant(), data, COLLECTION)


def held(clients: Any, data: wl.Workload) -> dict[str, Any]:
    with clients.postgresql() as conn:
        rows = wl.read_postgres(conn, [CHOSEN])
    redis = {k: v for k, (v, _ttl) in wl.read_redis(clients.redis(), data.prefix, CHOSEN).items()}
    points = wl.read_qdrant(clients.qdrant(), COLLECTION, [CHOSEN])
    return {"redis": redis, "rows": rows, "points": points}


def wipe_chosen(clients: Any, data: wl.Workload) -> None:
    from qdrant_client import models

    redis = clients.redis()
    keys = list(redis.scan_iter(match=wl.namespace_pattern(data.prefix, CHOSEN), count=1000))
    for start in range(0, len(keys), 1000):
        redis.unlink(*keys[start : start + 1000])
    with clients.postgresql() as conn:
        conn.execute("DELETE FROM memory_items WHERE tenant_id = %s", [CHOSEN])
    clients.qdrant().delete(
        COLLECTION,
        points_selector=models.FilterSelector(
            filter=models.Filter(
                must=[models.FieldCondition(key="tenant_id", match=models.MatchValue(value=CHOSEN))]
            )
        ),
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inventory", default=str(PROJECT_DIR / "benchmarks/inventories/bench"))
    parser.add_argument("--size", type=int, default=10_000, help="keys and rows of the tenant")
    parser.add_argument("--others", type=int, default=99)
    parser.add_argument("--other-size", type=int, default=500)
    args = parser.parse_args()

    inventory = resolve_inventory(args.inventory)
    # Deployed and healthy: from nothing, or only probed when it is (a stopped service restarted)
    outcome = deploy(
        Context(inventory=inventory, echo=False), limit="", tags=(), check=False, diff=False
    )
    if not outcome.ok:
        raise SystemExit(f"benchmark: deploy failed: {outcome.error}")
    clients = stack_clients(inventory.state_dir)
    # the key prefix the deploy gave the application (redis_app_key_prefix)
    prefix = str(load_targets(inventory.state_dir).deployment["redis"]["key_prefix"])

    others = wl.generate(
        7,
        [f"bench-other-{i:03d}" for i in range(args.others)],
        prefix=prefix,
        redis_keys_per_tenant=args.other_size,
        items_per_tenant=args.other_size,
    )
    write_all(clients, others)
    chosen = wl.generate(
        8, [CHOSEN], prefix=prefix, redis_keys_per_tenant=args.size, items_per_tenant=args.size
    )
    started = time.perf_counter()
    write_all(clients, chosen)
    load_s = time.perf_counter() - started
    before = held(clients, chosen)

    made = invoke_json("backup.create", "--inventory", args.inventory, "--namespace", CHOSEN)
    wipe_chosen(clients, chosen)
    started = time.perf_counter()
    restored = invoke_json(
        "backup.restore",
        made["set_id"],
        "--inventory",
        args.inventory,
        "--namespace",
        CHOSEN,
        "--yes",
    )
    restore_s = time.perf_counter() - started
    after = held(clients, chosen)
    differs = [tier for tier in before if after[tier] != before[tier]]
    if differs:
        counts = {t: (len(before[t]), len(after[t])) for t in differs}
        raise SystemExit(f"benchmark: the restored tenant differs in {differs}: {counts}")

    print(
        json.dumps(
            {
                "tenants": args.others + 1,
                "tenant_keys": len(before["redis"]),
                "tenant_rows": len(before["rows"]),
                "tenant_points": len(before["points"]),
                "other_tenants_size": args.other_size,
                "load_s": round(load_s, 2),
                "backup_s": made["seconds"],
                "restore_s": round(restore_s, 2),
                "restore_inner_s": restored["seconds"],
                "restore_vs_load": round(restore_s / load_s, 3),
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
