"""`python -m memops probe KIND`: probe one component, for playbooks.

The target (one component object, as in targets.json) comes from the
MEMOPS_PROBE_TARGET environment variable, never from argv, because it holds a
password or API key and argv is visible to every user of the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from memops.deploy.targets import KINDS, Target, TargetsError, parse_target
from memops.errors import error_line
from memops.exitcodes import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK
from memops.ops import options
from memops.ops.options import argparse_type
from memops.probes import DEFAULT_TIMEOUT_S, probe_until_healthy
from memops.probes.result import RETRY_ATTEMPTED, ProbeResult, State

ENV_VAR = "MEMOPS_PROBE_TARGET"

_EPILOG = f"""\
The target is read from ${ENV_VAR} as a JSON object, for example
  {{"kind": "redis", "host": "127.0.0.1", "port": 16379, "password": "..."}}
Prints the result as one JSON line on stdout.
Exit status: 0 healthy (or degraded without --require-healthy), 1 failing (or
degraded with --require-healthy), 2 bad arguments or target.
"""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "probe",
        help="probe one component (target JSON in $MEMOPS_PROBE_TARGET)",
        description="Probe one Redis, PostgreSQL, Qdrant or HTTP service and print the result.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("kind", choices=KINDS, help="which probe to run")
    parser.add_argument(
        "--timeout",
        type=argparse_type("timeout", options.number(default=DEFAULT_TIMEOUT_S, greater_than=0)),
        default=DEFAULT_TIMEOUT_S,
        help=f"seconds per attempt (default {DEFAULT_TIMEOUT_S:g})",
    )
    parser.add_argument(
        "--retries",
        type=argparse_type("retries", options.integer(default=1, minimum=0)),
        default=1,
        help="retries of a failed probe (1)",
    )
    parser.add_argument(
        "--wait",
        type=argparse_type("wait", options.number(default=0.0, at_least=0)),
        default=0.0,
        metavar="SECONDS",
        help="keep re-probing until healthy or SECONDS have passed (after a start)",
    )
    parser.add_argument(
        "--require-healthy", action="store_true", help="exit 1 when the result is not healthy"
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    raw = os.environ.get(ENV_VAR)
    if not raw:
        error_line("probe", f"{ENV_VAR} is not set (it must hold the target as JSON)")
        return EXIT_BAD_INPUT
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        error_line("probe", f"{ENV_VAR}: invalid JSON at column {exc.colno}: {exc.msg}")
        return EXIT_BAD_INPUT
    code, document, message = probe_outcome(
        args.kind,
        data,
        timeout_s=args.timeout,
        retries=args.retries,
        wait_s=args.wait,
        require_healthy=args.require_healthy,
    )
    if code == EXIT_BAD_INPUT:
        error_line("probe", message)
        return code
    print(json.dumps(document))
    if message:
        print(message, file=sys.stderr)
    return code


def probe_outcome(
    kind: str,
    data: Any,
    *,
    timeout_s: float,
    retries: int,
    wait_s: float,
    require_healthy: bool,
) -> tuple[int, dict[str, Any], str]:
    """Probe the target described by ``data``: exit code, result document, one-line message.

    What `python -m memops probe` prints, and what the deploy's in-process probe
    (plugins/action/memops_probe.py) returns.
    """
    try:
        target = _parse(kind, data)
    except TargetsError as exc:
        return EXIT_BAD_INPUT, {}, str(exc)
    result = probe_until_healthy(target, timeout_s, retries, wait_s)
    document = {"kind": target.kind, "endpoint": target.endpoint, **result.to_dict()}
    if result.state is State.HEALTHY:
        return EXIT_OK, document, ""
    failed = result.state is State.FAILING or require_healthy
    return (EXIT_FAILED if failed else EXIT_OK), document, _summary(target, result)


def _parse(kind: str, data: Any) -> Target:
    target = parse_target(kind, data, ENV_VAR, default_kind=kind)
    if target.kind != kind:
        raise TargetsError(f"{ENV_VAR}.kind is {target.kind!r} but the command probes {kind!r}")
    return target


def _summary(target: Target, result: ProbeResult) -> str:
    """One line for humans, e.g. `redis probe failed at 127.0.0.1:16379: connect_refused (...)`."""
    codes = ", ".join(code for code in result.reason_codes if code != RETRY_ATTEMPTED)
    verb = "failed" if result.state is State.FAILING else "degraded"
    line = f"{target.kind} probe {verb} at {target.endpoint}: {codes}"
    return f"{line} ({result.error})" if result.error else line
