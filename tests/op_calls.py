"""Calling an operation the way a task does, with --json, and reading what it printed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from memops.ops.runner import Operation, run_operation


def call(
    operation: Operation, inventory: Path, capsys: pytest.CaptureFixture[str], **raw: Any
) -> tuple[int, dict[str, Any], str]:
    """Exit code, the JSON document on stdout, and stderr (stripped)."""
    capsys.readouterr()
    code = run_operation(operation, raw, inventory_spec=str(inventory), as_json=True)
    out, err = capsys.readouterr()
    return code, json.loads(out), err.strip()
