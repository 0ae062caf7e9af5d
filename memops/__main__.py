"""`python -m memops …`: the entry point playbooks use to run memops logic where it runs.

Each subcommand lives in its own module, which exposes ``register(subparsers)``;
this file only wires them together. Users type `invoke …`, not this.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from memops.cli import json_object
from memops.errors import BadInput

# subcommand -> the module that registers it. Only the module of the command being run
# is imported (a playbook runs a probe per service: importing every client library for
# each one cost most of a second); --help and unknown commands import them all.
_COMMAND_MODULES = {
    "probe": "memops.cli.probe",
    "migrate": "memops.cli.migrate",
    "schema-version": "memops.cli.schema",
    "standin-archive": "memops.cli.standin",
    "targets-write": "memops.cli.targets",
    "render-profile": "memops.cli.render",
    "operation": "memops.cli.operation",
}


def _modules_for(argv: list[str]) -> list[str]:
    command = next((word for word in argv if not word.startswith("-")), None)
    if command in _COMMAND_MODULES:
        return [_COMMAND_MODULES[command]]
    return list(dict.fromkeys(_COMMAND_MODULES.values()))


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m memops")
    parser.add_argument(
        "--env-from-stdin",
        action="store_true",
        help="read a JSON object of environment variables from stdin first (for secrets: "
        "Ansible's `environment:` puts values on a shell command line that `ps` shows)",
    )
    subparsers = parser.add_subparsers(dest="command", required=True)
    for module_name in _modules_for(sys.argv[1:] if argv is None else argv):
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser(argv).parse_args(argv)
    if args.env_from_stdin:
        try:
            variables = json_object(sys.stdin.read(), "--env-from-stdin")
        except BadInput as exc:
            print(f"memops: {exc}", file=sys.stderr)
            return exc.exit_code
        os.environ.update({str(key): str(value) for key, value in variables.items()})
    return int(args.handler(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
