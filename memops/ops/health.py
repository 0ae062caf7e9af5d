"""`invoke health`: one probe cycle over every deployed component."""

from __future__ import annotations

from pathlib import Path

from memops.audit import append_audit
from memops.health import HealthSnapshot, run_cycle
from memops.health_metrics import write_textfile
from memops.health_state import HealthStateError
from memops.inventory import InventoryError, resolve_inventory
from memops.ops.report import EXIT_BAD_INPUT, emit_json, error_line
from memops.targets import TARGETS_FILE, Targets, TargetsError, load_targets


def load_inventory_targets(inventory_spec: str) -> tuple[Path, Targets]:
    inventory = resolve_inventory(inventory_spec)
    state_dir = inventory.state_dir
    if not (state_dir / TARGETS_FILE).exists():
        raise TargetsError(
            f"nothing deployed for inventory {inventory.name!r} "
            f"({state_dir / TARGETS_FILE} is missing): run `invoke deploy` first"
        )
    return state_dir, load_targets(state_dir)


def health_cycle(
    targets: Targets, state_dir: Path, *, timeout_s: float = 2.0, retries: int = 1
) -> HealthSnapshot:
    """One probe cycle; its metrics go to node_exporter's textfile directory when deployed."""
    snapshot = run_cycle(targets, state_dir, timeout_s=timeout_s, retries=retries)
    textfile_dir = targets.deployment.get("textfile_dir")
    if isinstance(textfile_dir, str) and textfile_dir:
        try:
            write_textfile(snapshot, targets.inventory or "unknown", Path(textfile_dir))
        except OSError as exc:  # metrics are a side channel: report, keep the verdict
            error_line("health", f"could not publish metrics to {textfile_dir}: {exc}")
    return snapshot


def health(inventory_spec: str, *, as_json: bool, timeout_s: float, retries: int) -> int:
    try:
        state_dir, targets = load_inventory_targets(inventory_spec)
        snapshot = health_cycle(targets, state_dir, timeout_s=timeout_s, retries=retries)
    except (InventoryError, TargetsError, HealthStateError) as exc:
        error_line("health", str(exc))
        return EXIT_BAD_INPUT
    append_audit(state_dir, "health", {"inventory": targets.inventory}, str(snapshot.state))
    if as_json:
        emit_json(snapshot.to_dict())
    else:
        print_snapshot(snapshot, targets)
    return snapshot.exit_code


def print_snapshot(snapshot: HealthSnapshot, targets: Targets) -> None:
    width = max(len(name) for name in snapshot.components)
    for name, component in sorted(snapshot.components.items()):
        target = targets.components.get(name)
        endpoint = target.endpoint if target else "?"
        reasons = ", ".join(component.reason_codes)
        print(
            f"{name:<{width}}  {component.state!s:<8}  {component.latency_ms:7.1f} ms  "
            f"{endpoint}{'  ' + reasons if reasons and str(component.state) != 'healthy' else ''}"
        )
    print(
        f"stack: {snapshot.state} (failure_streak {snapshot.failure_streak}, "
        f"queue_depth {snapshot.queue_depth}, checked {snapshot.checked_at})"
    )
