"""`python -m memops schema-version`: the latest episodic-memory schema version this memops knows.

The postgresql role reads it to set the expected schema version of the health target when
``postgresql_schema_version`` is ``latest``. Prints the number alone on one line.
"""

from __future__ import annotations

import argparse
from typing import Any

from memops.schema.migrate import latest_version


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "schema-version",
        help="print the latest schema version of the bundled migrations",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    print(latest_version())
    return 0
