"""Benchmark: how long a replicated tier is without an acknowledged write after its primary's
host is killed, and how many acknowledged writes it loses. Prints one JSON object.

    .venv/bin/python benchmarks/failover.py --inventory PATH [--runs 3] [--tier redis]
    .venv/bin/python benchmarks/failover.py [--runs 3] [--keep]

With --inventory, it uses that deployed replicated lab stack (`invoke lab.up --shape
replicated`, then `invoke deploy`; MEMOPS_LAB_DIR names the lab). Without, it starts its
own lab (memops-bench-ha on 198.18.50.0/24, files in .state/bench-ha-lab), deploys, runs,
and takes the lab down (unless --keep).

Each run, per tier (--tier redis, postgresql or all): a client writes through the engine
(Redis: the Sentinels' primary, a write counted once WAIT says a replica has it;
PostgreSQL: the libpq multi-host string with target_session_attrs=read-write, a row counted
once its commit returned, synchronous_mode on); the primary's (leader's) container is
killed (`docker kill`); the figure is the time from the kill to the first acknowledged write
on the new primary, divided by the engine's own detection window (Sentinel's
down-after-milliseconds, Patroni's ttl, both read from the engine): goal <= 1.5. Lost
writes (acknowledged, missing on the new primary): goal 0. The killed host is started again
and must rejoin as a replica before the next run.
The tiny run (tests/multihost/test_replicated_redis.py): --inventory of the test lab,
--runs 1, both tiers.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

PROJECT_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_DIR))

from memops.deploy.targets import load_targets  # noqa: E402
from memops.ha import patroni, redis_topology  # noqa: E402
from memops.ha.sentinel import master_state  # noqa: E402
from memops.lab.engine import find_engine  # noqa: E402
from memops.lab.lifecycle import lab_cache, lab_home, read_record  # noqa: E402
from memops.paths import state_dir_for  # noqa: E402
from memops.testing.failover import (  # noqa: E402
    AcknowledgedWriter,
    CommittedWriter,
    postgres_conninfo,
    rejoined,
)

INVOKE = str(Path(sys.executable).with_name("invoke"))
NAME = "memops-bench-ha"
SUBNET = "198.18.50.0/24"
OWN_LAB_DIR = PROJECT_DIR / ".state" / "bench-ha-lab"


def invoke(*args: str, timeout: float = 3600) -> dict[str, Any]:
    run = subprocess.run(
        [INVOKE, *args, "--json"],
        cwd=PROJECT_DIR,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if run.returncode != 0:
        raise RuntimeError(
            f"invoke {args[0]} exited {run.returncode}: {run.stderr.strip()[-2000:]}"
        )
    return dict(json.loads(run.stdout))


def wait_until(check: Any, timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if found := check():
                return found
        except Exception:  # a node still down or restarting: ask again
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{what}: not within {timeout_s:g}s")


def wait_healthy(inventory: str, timeout_s: float = 360) -> None:
    """Before a kill, the whole stack healthy again: every host of the replicated lab runs a
    Redis node, a PostgreSQL member and an etcd member, so the previous kill hit all three."""

    def healthy() -> bool:
        run = subprocess.run(
            [INVOKE, "health", "--inventory", inventory],
            cwd=PROJECT_DIR,
            capture_output=True,
            timeout=300,
            check=False,
        )
        return run.returncode == 0

    wait_until(healthy, timeout_s, "a healthy stack before the kill")


def redis_run(state_dir: Path, hosts: dict[str, str]) -> dict[str, Any]:
    """One kill of the Redis primary's host; its figures."""
    targets = load_targets(state_dir)
    sentinels = redis_topology.endpoints(redis_topology.sentinels(targets))
    master = redis_topology.sentinels(targets)[0].master
    window_s = int(master_state(sentinels[0], master, 2.0)["down-after-milliseconds"]) / 1000
    old = redis_topology.primary_address(targets)
    container = find_engine(lab_cache()).client.containers.get(hosts[old[0]])  # type: ignore[union-attr]
    writer = AcknowledgedWriter(targets, "memops:memory:bench-failover")
    writer.start()
    try:
        wait_until(lambda: len(writer.acknowledged) >= 50, 60, "writes before the kill")
        killed_at = time.monotonic()
        container.kill()
        back_s = wait_until(
            lambda: writer.first_ack_after(killed_at, not_on=old), 120, "a write on a new primary"
        )
        time.sleep(1)  # a few more acknowledged writes on the new primary
    finally:
        writer.stop()
    new = redis_topology.primary_address(targets)
    new_node = next(n for n in redis_topology.redis_nodes(targets) if (n.host, n.port) == new)
    lost = writer.lost_on(new_node)
    container.start()
    old_node = next(n for n in redis_topology.redis_nodes(targets) if (n.host, n.port) == old)
    wait_until(lambda: rejoined(old_node, new), 180, "the killed primary back as a replica")
    return {
        "seconds_to_write": round(back_s, 2),
        "detection_window_s": window_s,
        "ratio": round(back_s / window_s, 3),
        "acknowledged": len(writer.acknowledged),
        "lost": len(lost),
    }


def postgresql_run(state_dir: Path, hosts: dict[str, str]) -> dict[str, Any]:
    """One kill of the Patroni leader's host; its figures (the window: Patroni's ttl, read
    from its REST API's GET /config)."""
    import httpx

    targets = load_targets(state_dir)
    urls = [t.patroni_url or "" for t in patroni.patroni_targets(targets)]
    ttl_s = float(httpx.get(f"{urls[0].rstrip('/')}/config", timeout=5).json()["ttl"])
    old = patroni.leader_of(patroni.cluster_members(urls))
    if old is None:
        raise RuntimeError("no Patroni leader before the kill")
    container = find_engine(lab_cache()).client.containers.get(hosts[old.host])  # type: ignore[union-attr]
    writer = CommittedWriter(postgres_conninfo(targets))
    writer.prepare()
    writer.start()
    try:
        wait_until(lambda: len(writer.acknowledged) >= 50, 60, "commits before the kill")
        killed_at = time.monotonic()
        container.kill()
        back_s = wait_until(
            lambda: writer.first_ack_after(killed_at, not_on=old.host),
            180,
            "a commit on a new leader",
        )
        time.sleep(1)
    finally:
        writer.stop()
    lost = writer.lost()
    container.start()

    wait_until(
        lambda: patroni.follows(patroni.cluster_members(urls), old.name),
        300,
        "the killed leader back as a standby",
    )
    return {
        "seconds_to_write": round(back_s, 2),
        "detection_window_s": ttl_s,
        "ratio": round(back_s / ttl_s, 3),
        "acknowledged": len(writer.acknowledged),
        "lost": len(lost),
    }


def summary(tier: str, runs: list[dict[str, Any]]) -> dict[str, Any]:
    ratios = [run["ratio"] for run in runs]
    return {
        "tier": tier,
        "runs": runs,
        "ratio_max": max(ratios),
        "ratio_median": statistics.median(ratios),
        "seconds_max": max(run["seconds_to_write"] for run in runs),
        "lost_total": sum(run["lost"] for run in runs),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inventory", help="a deployed replicated lab stack (default: its own)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--tier", choices=["redis", "postgresql", "all"], default="all")
    parser.add_argument("--keep", action="store_true", help="leave its own lab up at the end")
    args = parser.parse_args()
    own = not args.inventory
    if own:
        os.environ["MEMOPS_LAB_DIR"] = str(OWN_LAB_DIR)
        made = invoke("lab.up", "--name", NAME, "--subnet", SUBNET, "--shape", "replicated")
        inventory = made["inventory"]
    else:
        inventory = args.inventory
    try:
        if own:
            invoke("deploy", "--inventory", inventory)
        record = read_record(lab_home())
        if record is None:
            raise RuntimeError("no lab record: set MEMOPS_LAB_DIR to the lab of --inventory")
        hosts = {host["address"]: host["name"] for host in record["hosts"]}
        state_dir = state_dir_for(Path(inventory).name)
        tiers = {}
        if args.tier in ("redis", "all"):
            runs = []
            for _ in range(args.runs):
                wait_healthy(inventory)
                runs.append(redis_run(state_dir, hosts))
            tiers["redis"] = summary("redis", runs)
        if args.tier in ("postgresql", "all"):
            runs = []
            for _ in range(args.runs):
                wait_healthy(inventory)
                runs.append(postgresql_run(state_dir, hosts))
            tiers["postgresql"] = summary("postgresql", runs)
    finally:
        if own and not args.keep:
            invoke("lab.down")
    print(
        json.dumps(
            {
                "tiers": tiers,
                "ratio_max": max(t["ratio_max"] for t in tiers.values()),
                "lost_total": sum(t["lost_total"] for t in tiers.values()),
                "goal": {"ratio_max": 1.5, "lost_total": 0},
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
