"""Benchmark: the lab and a deploy of the staging shape on it. Prints one JSON object.

    .venv/bin/python benchmarks/lab.py [--hosts 4] [--keep]

Starts a lab of its own (memops-bench-lab on 198.18.44.0/24, files in .state/bench-lab;
the image is built first when the cache lacks it, and that time is reported apart),
takes it down and starts it again to time a lab up from the cached image, deploys the
stack onto it from nothing, deploys it again, and takes the lab down (also when a step
fails, unless --keep). Figures are ratios against the first deploy of the same run:
re-deploy / first deploy (goal <= 0.25, as on one host) and cached lab up / first deploy.
The tiny run in the tests: --hosts 1.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

PROJECT_DIR = Path(__file__).resolve().parent.parent
INVOKE = str(Path(sys.executable).with_name("invoke"))
NAME = "memops-bench-lab"
SUBNET = "198.18.44.0/24"
ENV = {**os.environ, "MEMOPS_LAB_DIR": str(PROJECT_DIR / ".state" / "bench-lab")}


def invoke(*args: str, timeout: float = 3600) -> tuple[dict[str, Any], float]:
    """Run `invoke ARGS --json`; its document and its wall time. Raises when it fails."""
    started = time.monotonic()
    run = subprocess.run(
        [INVOKE, *args, "--json"],
        cwd=PROJECT_DIR,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    seconds = time.monotonic() - started
    if run.returncode != 0:
        raise RuntimeError(
            f"invoke {args[0]} exited {run.returncode}: {run.stderr.strip()[-2000:]}"
        )
    return json.loads(run.stdout), seconds


def lab_up(hosts: int) -> tuple[dict[str, Any], float]:
    return invoke("lab.up", "--name", NAME, "--subnet", SUBNET, "--hosts", str(hosts))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=4)
    parser.add_argument("--keep", action="store_true", help="leave the lab up at the end")
    args = parser.parse_args()
    result: dict[str, Any] = {"hosts": args.hosts}
    try:
        first_up, first_up_s = lab_up(args.hosts)
        result["image_built"] = first_up["image_built"]
        result["image_s"] = first_up["image_seconds"]
        result["first_lab_up_s"] = round(first_up_s, 1)
        invoke("lab.down")
        made, up_s = lab_up(args.hosts)  # the image is cached now
        result["lab_up_cached_s"] = round(up_s, 1)
        inventory = made["inventory"]
        first, first_s = invoke("deploy", "--inventory", inventory)
        result["first_deploy_s"] = round(first_s, 1)
        result["first_deploy_changed"] = first["changed"]
        again, again_s = invoke("deploy", "--inventory", inventory)
        result["redeploy_s"] = round(again_s, 1)
        result["redeploy_changed"] = again["changed"]
        result["redeploy_ratio"] = round(again_s / first_s, 3)
        result["lab_up_ratio"] = round(up_s / first_s, 3)
        result["goals"] = {"redeploy_ratio": "<= 0.25", "redeploy_changed": "== 0"}
        result["ok"] = again["changed"] == 0 and result["redeploy_ratio"] <= 0.25
    finally:
        if not args.keep:
            invoke("lab.down")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
