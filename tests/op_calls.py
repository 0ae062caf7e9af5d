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


def scratch_inventory(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    components: dict[str, Any],
    deployment: dict[str, Any] | None = None,
) -> Path:
    """An inventory of localhost whose state directory records only ``components``."""
    from memops.deploy.targets_file import merge_targets

    root = tmp_path / "inv"
    (root / "group_vars").mkdir(parents=True, exist_ok=True)
    (root / "hosts.yml").write_text("all:\n  hosts:\n    localhost:\n")
    (root / "group_vars" / "all.yml").write_text("{}\n")
    state = tmp_path / "state"
    monkeypatch.setenv("MEMOPS_STATE_DIR", str(state))
    merge_targets(state, "inv", components, deployment or {})
    return root
