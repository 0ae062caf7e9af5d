"""`invoke deploy`: run playbooks/deploy.yml and report the outcome."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from memops.audit import append_audit
from memops.inventory import Inventory, InventoryError, resolve_inventory
from memops.locking import LockBusyError, action_lock
from memops.ops.report import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK, emit_json, error_line
from memops.playbook import PlaybookOptions, PlaybookResult, run_playbook


@dataclass(frozen=True)
class DeployOutcome:
    exit_code: int
    inventory: Inventory | None
    result: PlaybookResult | None
    error: str = ""


def run_deploy(
    inventory_spec: str, options: PlaybookOptions, *, echo: bool, command: str = "deploy"
) -> DeployOutcome:
    """Deploy without printing a summary (``invoke up`` builds on this)."""
    try:
        inventory = resolve_inventory(inventory_spec)
    except InventoryError as exc:
        return DeployOutcome(EXIT_BAD_INPUT, None, None, str(exc))
    arguments: dict[str, Any] = {
        "inventory": inventory.name,
        "limit": options.limit,
        "tags": options.tags,
        "check": options.check,
    }
    try:
        with action_lock(inventory.state_dir, command):
            result = run_playbook("deploy", inventory, options, echo=echo)
    except LockBusyError as exc:
        return DeployOutcome(EXIT_BAD_INPUT, inventory, None, str(exc))
    outcome = "ok" if result.ok else "failed"
    append_audit(
        inventory.state_dir,
        command,
        arguments,
        outcome,
        {"changed": result.changed, "error": result.error_line, "log": str(result.log_file)},
    )
    if not result.ok:
        return DeployOutcome(EXIT_FAILED, inventory, result, result.error_line)
    return DeployOutcome(EXIT_OK, inventory, result)


def deploy(inventory_spec: str, options: PlaybookOptions, *, as_json: bool) -> int:
    outcome = run_deploy(inventory_spec, options, echo=not as_json)
    if as_json:
        emit_json(_deploy_document(outcome, options))
    elif outcome.result is not None and outcome.exit_code == EXIT_OK:
        mode = " (check mode: nothing was changed)" if options.check else ""
        print(
            f"deploy ok on inventory {outcome.inventory.name}: "  # type: ignore[union-attr]
            f"{outcome.result.changed} changed{mode} in {outcome.result.duration_s:.1f}s"
        )
    if outcome.error:
        error_line("deploy", outcome.error)
    return outcome.exit_code


def _deploy_document(outcome: DeployOutcome, options: PlaybookOptions) -> dict[str, Any]:
    document: dict[str, Any] = {
        "ok": outcome.exit_code == EXIT_OK,
        "check": options.check,
        "error": outcome.error or None,
        "inventory": outcome.inventory.name if outcome.inventory else None,
    }
    if outcome.result is not None:
        document.update(outcome.result.to_dict())
        document["ok"] = outcome.exit_code == EXIT_OK
    return document
