"""`python -m memops targets-write`: the deploy playbook's last step.

The components arrive as JSON on stdin (they hold secrets, so never in argv).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from memops.deploy.targets import TargetsError
from memops.deploy.targets_file import merge_targets
from memops.errors import error_line
from memops.exitcodes import EXIT_BAD_INPUT


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "targets-write",
        help="merge deployed components (JSON on stdin) into STATE_DIR/targets.json",
    )
    parser.add_argument("--state-dir", required=True, type=Path)
    parser.add_argument("--inventory", required=True, help="inventory name recorded in the file")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    try:
        payload = json.loads(sys.stdin.read())
        components = payload.get("components", {})
        deployment = payload.get("deployment", {})
        if not isinstance(components, dict) or not isinstance(deployment, dict):
            raise TargetsError("stdin: components and deployment must be JSON objects")
        changed = merge_targets(args.state_dir, args.inventory, components, deployment)
    except (ValueError, TargetsError) as exc:
        error_line("targets-write", str(exc))
        return EXIT_BAD_INPUT
    print(json.dumps({"changed": changed}))
    return 0
