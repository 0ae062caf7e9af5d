"""`python -m memops render-profile`: the deploy playbook renders an inventory's alert profile.

An inventory that sets ``memops_alert_profile`` (the tests' inventory uses ``test``: short
``for`` durations) gets its own copy of the rules in the controller's state directory,
rendered on each deploy, so the committed ``alerts/`` stay the production rules.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from memops.errors import error_line
from memops.exitcodes import EXIT_BAD_INPUT
from memops.ops.render import DEFAULT_CONFIG
from memops.render.driver import RenderError, render_all, write_outputs


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "render-profile",
        help="render the observability files with a profile into OUT (prints {changed: bool})",
    )
    parser.add_argument("--profile", required=True)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    try:
        outputs = render_all(args.config, args.out, args.profile)
    except RenderError as exc:
        error_line("render-profile", str(exc))
        return EXIT_BAD_INPUT
    args.out.mkdir(parents=True, exist_ok=True, mode=0o750)
    written = write_outputs(outputs, args.out)
    print(json.dumps({"changed": bool(written.written or written.removed)}))
    return 0
