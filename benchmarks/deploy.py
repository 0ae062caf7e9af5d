"""Benchmark: deploy times, idempotent re-deploy, probe latency. Prints one JSON object.

    .venv/bin/python benchmarks/deploy.py [--probe-runs 50] [--strategies mitogen,linear] [--keep]

For each strategy (mitogen's, the default, and Ansible's own linear one) it deploys its
own instance (memops-bench, ports 28379/28432/28333) from nothing, deploys it again
(the fast path: every component only probed), and once more with --full (every task).
Then it probes the whole stack repeatedly, stops Redis and times a probe of the stopped
service, and tears the instance down (unless --keep).
Goals (issues #2 and #8): re-deploy/first deploy <= 0.25 in the default configuration,
probe median <= 250 ms, a probe of a stopped service bounded by its timeout.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_DIR))

from memops.deploy.inventory import resolve_inventory  # noqa: E402
from memops.deploy.targets import load_targets  # noqa: E402
from memops.health.cycle import probe_all  # noqa: E402
from memops.ops.deploy import deploy  # noqa: E402
from memops.ops.runner import Context  # noqa: E402

INSTANCE = "memops-bench"
INVENTORY = str(PROJECT_DIR / "benchmarks" / "inventories" / "bench")


def teardown() -> None:
    """Remove every trace of the bench instance, so the next deploy starts from nothing."""
    monitoring = ("node-exporter", "redis-exporter", "postgres-exporter")
    monitoring += ("prometheus", "alertmanager")
    pidfiles = [f"/run/redis-{INSTANCE}.pid", f"/run/qdrant-{INSTANCE}.pid"]
    pidfiles += [f"/run/memops-{daemon}-{INSTANCE}.pid" for daemon in monitoring]
    for pidfile in pidfiles:
        subprocess.run(
            ["start-stop-daemon", "--stop", "--oknodo", "--pidfile", pidfile, "--retry", "5"],
            capture_output=True,
            check=False,
        )
        Path(pidfile).unlink(missing_ok=True)
    if shutil.which("pg_dropcluster") and Path(f"/etc/postgresql/15/{INSTANCE}").exists():
        subprocess.run(["pg_dropcluster", "--stop", "15", INSTANCE], check=True)
    for path in Path("/etc/redis").glob(f"{INSTANCE}*"):
        path.unlink()
    for directory in (
        f"/var/lib/redis/{INSTANCE}",
        f"/etc/qdrant/{INSTANCE}",
        f"/opt/qdrant/{INSTANCE}",
        f"/var/lib/qdrant/{INSTANCE}",
        f"/etc/memops-monitoring/{INSTANCE}",
        f"/var/lib/memops-monitoring/{INSTANCE}",
        f"/var/lib/memops/textfile/{INSTANCE}",
    ):
        shutil.rmtree(directory, ignore_errors=True)
    for fingerprint in Path("/var/lib/memops/deployed").glob(f"*{INSTANCE}*"):
        fingerprint.unlink()


def timed_deploy(*, full: bool = False) -> tuple[float, int]:
    started = time.perf_counter()
    context = Context(inventory=resolve_inventory(INVENTORY), echo=False)
    outcome = deploy(context, limit="", tags=(), check=False, diff=False, full=full)
    elapsed = time.perf_counter() - started
    if not outcome.ok:
        raise SystemExit(f"benchmark deploy failed: {outcome.error}")
    return elapsed, int(outcome.document.get("changed", -1))


def deploy_cycle(strategy: str) -> dict[str, float | int | str]:
    """From nothing: first deploy, re-deploy (fast path), re-deploy with --full."""
    if strategy not in ("mitogen", "linear"):
        raise SystemExit(f"benchmark: unknown strategy {strategy!r} (mitogen or linear)")
    os.environ["MEMOPS_MITOGEN"] = "1" if strategy == "mitogen" else "0"
    teardown()
    first_s, first_changed = timed_deploy()
    second_s, second_changed = timed_deploy()
    full_s, full_changed = timed_deploy(full=True)
    return {
        "strategy": strategy,
        "first_deploy_s": round(first_s, 2),
        "first_deploy_changed": first_changed,
        "redeploy_s": round(second_s, 2),
        "redeploy_changed": second_changed,
        "redeploy_ratio": round(second_s / first_s, 3),
        "full_redeploy_s": round(full_s, 2),
        "full_redeploy_changed": full_changed,
        "full_redeploy_ratio": round(full_s / first_s, 3),
    }


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    index = max(0, min(len(ordered) - 1, round(fraction * len(ordered)) - 1))
    return ordered[index]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--probe-runs", type=int, default=50)
    parser.add_argument("--probe-timeout", type=float, default=2.0)
    parser.add_argument("--keep", action="store_true", help="leave the bench instance running")
    parser.add_argument(
        "--strategies",
        default="linear,mitogen",
        help="comma-separated, from mitogen (the default strategy) and linear; the last one "
        "leaves the instance for the probe figures",
    )
    args = parser.parse_args()

    deploys = {strategy: deploy_cycle(strategy) for strategy in args.strategies.split(",")}

    targets = load_targets(resolve_inventory(INVENTORY).state_dir)
    stack_ms = []
    for _ in range(args.probe_runs):
        started = time.perf_counter()
        results = probe_all(targets.components, args.probe_timeout, 1)
        stack_ms.append((time.perf_counter() - started) * 1000)
        if any(result.failed for result in results.values()):
            raise SystemExit("benchmark: a probe of the healthy stack failed")

    subprocess.run(
        ["start-stop-daemon", "--stop", "--pidfile", f"/run/redis-{INSTANCE}.pid", "--retry", "5"],
        check=True,
    )
    redis_only = {"redis": targets.components["redis"]}
    started = time.perf_counter()
    stopped = probe_all(redis_only, args.probe_timeout, 1)["redis"]
    stopped_ms = (time.perf_counter() - started) * 1000

    if not args.keep:
        teardown()
    default = deploys.get("mitogen") or next(iter(deploys.values()))
    print(
        json.dumps(
            {
                **default,
                "redeploy_ratio_goal": 0.25,
                "strategies": deploys,
                "probe_runs": args.probe_runs,
                "stack_probe_median_ms": round(statistics.median(stack_ms), 1),
                "stack_probe_p95_ms": round(percentile(stack_ms, 0.95), 1),
                "stack_probe_median_goal_ms": 250,
                "stopped_redis_probe_ms": round(stopped_ms, 1),
                "stopped_redis_reason_codes": list(stopped.reason_codes),
                "probe_timeout_ms": args.probe_timeout * 1000,
                "probe_retries": 1,
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
