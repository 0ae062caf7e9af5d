"""`python -m memops operation NAME`: run a memops operation for a playbook (see memops.ops.remote).

The raw task options come as one JSON object on stdin (never argv); stdout is the
Outcome as JSON, exit code included, for the controller to print as its own.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from memops.cli import json_object
from memops.errors import BadInput
from memops.ops.runner import Operation, execute_operation


def _operations() -> dict[str, Operation]:
    from memops.ops.backup import CREATE, LIST, PRUNE, RESTORE, VERIFY
    from memops.ops.drill import DRILL
    from memops.ops.rebuild import HARD, REINDEX, SOFT, VALIDATE
    from memops.ops.validate import RECALL

    found = (CREATE, LIST, VERIFY, RESTORE, PRUNE, DRILL, VALIDATE, SOFT, HARD, REINDEX, RECALL)
    return {op.name: op for op in found}


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "operation", help="run a backup or rebuild operation (options on stdin)"
    )
    parser.add_argument("name", help="e.g. backup.create")
    parser.add_argument("--inventory", required=True)
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    operations = _operations()
    operation = operations.get(args.name)
    if operation is None:
        print(f"memops operation: unknown operation {args.name!r}", file=sys.stderr)
        return 2
    try:
        raw = json_object(sys.stdin.read(), "options on stdin")
    except BadInput as exc:
        print(f"memops operation: {exc}", file=sys.stderr)
        return exc.exit_code
    outcome = execute_operation(operation, raw, inventory_spec=args.inventory, echo=False)
    print(json.dumps(outcome.to_dict(), sort_keys=True))
    return outcome.exit_code
