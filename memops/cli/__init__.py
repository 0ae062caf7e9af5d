"""Subcommands of `python -m memops`, one module each."""

from __future__ import annotations

import json
from typing import Any

from memops.errors import BadInput


def json_object(text: str, what: str) -> dict[str, Any]:
    """``text`` as a JSON object; BadInput naming ``what`` otherwise."""
    try:
        value = json.loads(text or "{}")
    except ValueError as exc:
        raise BadInput(f"{what}: invalid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise BadInput(f"{what}: expected a JSON object")
    return value
