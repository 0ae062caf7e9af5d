"""Printing results: one JSON document for machines, short lines for people."""

from __future__ import annotations

import json
import sys
from typing import Any

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2


def emit_json(document: dict[str, Any]) -> None:
    print(json.dumps(document, indent=2, sort_keys=True))


def error_line(command: str, message: str) -> None:
    """The one line a failing command leaves on stderr."""
    print(f"memops {command}: {message}", file=sys.stderr)
