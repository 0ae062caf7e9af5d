"""Benchmark: deploy times, idempotent re-deploy, probe latency. Prints one JSON object.

    .venv/bin/python benchmarks/deploy.py [--probe-runs 50] [--strategies mitogen,linear] [--keep]

For each strategy (mitogen's, the default, and Ansible's own linear one) it deploys its
own instance (memops-bench, ports 28379/28432/28333) from nothing, deploys it again
(the fast path: every component only probed), and once more with --full (every task).
Then it probes the whole stack repeatedly, stops Redis and times a probe of the stopped
service, and tears the instance down, also when a step fails (unless --keep, which deploys
once more so that Redis runs again): every service, cluster, config, log, cron file and the
state directory .state/bench go, and the run fails naming anything left (``--teardown``
does only that). The tiny run in the tests: --strategies mitogen --probe-runs 3.
Goals (issues #2 and #8): re-deploy/first deploy <= 0.25 in the default configuration,
probe median <= 250 ms, a probe of a stopped service bounded by its timeout.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

PROJECT_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_DIR))

from memops.deploy.inventory import resolve_inventory  # noqa: E402
from memops.deploy.targets import load_targets  # noqa: E402
from memops.health.cycle import probe_all  # noqa: E402
from memops.ops.deploy import deploy  # noqa: E402
from memops.ops.runner import Context  # noqa: E402
from memops.paths import STATE_ROOT  # noqa: E402

INSTANCE = "memops-bench"
INVENTORY = str(PROJECT_DIR / "benchmarks" / "inventories" / "bench")
STATE_NAME = "bench"  # .state/bench; the backup schedule's cron file is memops-backup-bench
# Every port the bench instance listens on (group_vars/all/vars.yml of its inventory)
PORTS = tuple(
    sorted(
        value
        for name, value in yaml.safe_load(
            (Path(INVENTORY) / "group_vars" / "all" / "vars.yml").read_text()
        ).items()
        if name.endswith("_port") and isinstance(value, int)
    )
)


# Every path the bench deploy writes on this machine: configs, data, logs, pidfiles, deploy
# fingerprints, the backup schedule (cron file or systemd timers), unit files on systemd
# hosts. Each name holds the instance name (or the schedule's slug), which is how the
# tiny run (tests/test_benchmarks_tiny.py) checks, independently of this list, that none is left.
TRACES = (
    f"/etc/redis/{INSTANCE}.conf",
    f"/etc/redis/{INSTANCE}.secrets.conf",
    f"/etc/redis/tls-{INSTANCE}",
    f"/var/lib/redis/{INSTANCE}",
    f"/var/log/redis/memops-{INSTANCE}.log",
    f"/etc/logrotate.d/memops-redis-{INSTANCE}",
    f"/etc/postgresql/15/{INSTANCE}",
    f"/var/lib/postgresql/15/{INSTANCE}",
    f"/var/log/postgresql/postgresql-15-{INSTANCE}.log",
    f"/run/postgresql/15-{INSTANCE}.pid",
    "/run/postgresql/.s.PGSQL.28432*",
    f"/etc/qdrant/{INSTANCE}",
    f"/opt/qdrant/{INSTANCE}",
    f"/var/lib/qdrant/{INSTANCE}",
    f"/etc/memops-monitoring/{INSTANCE}",
    f"/var/lib/memops-monitoring/{INSTANCE}",
    f"/var/lib/memops/textfile/{INSTANCE}",
    f"/var/lib/memops/deployed/*{INSTANCE}*",
    f"/var/lib/grafana/dashboards/{INSTANCE}",
    f"/etc/grafana/provisioning/*/memops-{INSTANCE}.yml",
    f"/run/*{INSTANCE}*.pid",
    f"/var/log/*{INSTANCE}*.log",
    f"/etc/systemd/system/*{INSTANCE}*",
    f"/etc/systemd/system/memops-backup-{STATE_NAME}-*",
    f"/etc/cron.d/memops-backup-{STATE_NAME}",
)
DAEMONS = ("node-exporter", "redis-exporter", "postgres-exporter", "prometheus", "alertmanager")


def state_dir() -> Path:
    return resolve_inventory(INVENTORY).state_dir


def systemd_units() -> list[str]:
    """The bench's unit names, when systemd runs this machine."""
    if not Path("/run/systemd/system").is_dir():
        return []
    units = [f"redis-{INSTANCE}", f"qdrant-{INSTANCE}", f"postgresql@15-{INSTANCE}"]
    units += [f"memops-{daemon}-{INSTANCE}" for daemon in DAEMONS]
    units += [p.name for p in Path("/etc/systemd/system").glob(f"memops-backup-{STATE_NAME}-*")]
    return units


def teardown() -> list[str]:
    """Stop and remove every trace of the bench instance; the paths removed.

    Its services (pidfile daemons, or systemd units), its PostgreSQL cluster (also one
    whose data directory is gone, which pg_dropcluster refuses), every path of TRACES and
    the state directory .state/bench (secrets, targets, backup sets; a MEMOPS_STATE_DIR
    given instead is the caller's to remove).
    """
    for unit in systemd_units():
        subprocess.run(["systemctl", "disable", "--now", unit], capture_output=True, check=False)
    pidfiles = [f"/run/redis-{INSTANCE}.pid", f"/run/qdrant-{INSTANCE}.pid"]
    pidfiles += [f"/run/memops-{daemon}-{INSTANCE}.pid" for daemon in DAEMONS]
    pidfiles += [f"/run/postgresql/15-{INSTANCE}.pid"]
    for pidfile in pidfiles:
        if Path(pidfile).exists():
            subprocess.run(
                ["start-stop-daemon", "--stop", "--oknodo", "--pidfile", pidfile, "--retry", "5"],
                capture_output=True,
                check=False,
            )
    if shutil.which("pg_dropcluster") and Path(f"/etc/postgresql/15/{INSTANCE}").exists():
        subprocess.run(
            ["pg_dropcluster", "--stop", "15", INSTANCE], capture_output=True, check=False
        )
    removed = []
    for pattern in TRACES:
        for path in sorted(Path("/").glob(pattern.lstrip("/"))):
            removed.append(str(path))
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
    if systemd_units():
        subprocess.run(["systemctl", "daemon-reload"], capture_output=True, check=False)
    state = state_dir()
    if state == STATE_ROOT / STATE_NAME and state.exists():
        shutil.rmtree(state)
        removed.append(str(state))
    return removed


def leftovers() -> list[str]:
    """What of the bench instance is still here: paths, clusters, listeners, processes."""
    found = [str(p) for pattern in TRACES for p in Path("/").glob(pattern.lstrip("/"))]
    if shutil.which("pg_lsclusters"):
        clusters = subprocess.run(["pg_lsclusters", "-h"], capture_output=True, text=True)
        found += [f"cluster {line}" for line in clusters.stdout.splitlines() if INSTANCE in line]
        found += [
            f"pg_lsclusters: {line}" for line in clusters.stderr.splitlines() if INSTANCE in line
        ]
    for port in PORTS:
        with socket.socket() as probe:
            probe.settimeout(0.5)
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                found.append(f"a listener on port {port}")
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        if cmdline.parent.name == str(os.getpid()):
            continue
        try:
            argv = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if INSTANCE in argv:
            found.append(f"process {cmdline.parent.name}: {argv.strip()}")
    return found


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
    parser.add_argument(
        "--keep", action="store_true", help="leave the bench instance running (Redis restarted)"
    )
    parser.add_argument(
        "--teardown", action="store_true", help="only remove the bench instance, as a run ends"
    )
    parser.add_argument(
        "--strategies",
        default="linear,mitogen",
        help="comma-separated, from mitogen (the default strategy) and linear; the last one "
        "leaves the instance for the probe figures",
    )
    args = parser.parse_args()
    if args.teardown:
        removed = teardown()
        left = leftovers()
        print(json.dumps({"removed": removed, "leftovers": left}, indent=2))
        return 1 if left else 0

    try:
        figures = measure(args)
    finally:
        if not args.keep:
            teardown()
    if not args.keep and (left := leftovers()):
        raise SystemExit(f"benchmark: the teardown left {left}")
    print(json.dumps(figures, indent=2))
    return 0


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Deploy cycles per strategy, then probes of the healthy stack and of a stopped Redis."""
    deploys = {strategy: deploy_cycle(strategy) for strategy in args.strategies.split(",")}

    targets = load_targets(state_dir())
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
    if args.keep:
        timed_deploy()  # Redis was stopped: a deploy starts it again, for tenant_restore.py

    default = deploys.get("mitogen") or next(iter(deploys.values()))
    return {
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
    }


if __name__ == "__main__":
    sys.exit(main())
