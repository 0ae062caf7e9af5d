"""`invoke switchover --tier redis|postgresql [--to HOST]`: a planned change of primary.

The engine does it (Sentinel's failover, Patroni's switchover); memops checks that it
can happen without losing writes, asks, waits for the new primary and probes the stack.
"""

from __future__ import annotations

from typing import Any

from memops.deploy.targets import Targets, TargetsError
from memops.errors import MemopsError
from memops.exitcodes import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK
from memops.ha.patroni import PatroniError
from memops.ha.sentinel import SentinelError
from memops.ops import options
from memops.ops.backup import probe_line
from memops.ops.confirm import NotConfirmed, confirm
from memops.ops.health import deployed_targets
from memops.ops.runner import Context, Operation, Outcome

SWITCHOVER_TIERS = ("redis", "postgresql")
WAIT_S = 60.0


def switchover(context: Context, *, tier: str, to: str, dry_run: bool, yes: bool) -> Outcome:
    inventory = context.require_inventory()
    if not tier:
        return Outcome(EXIT_BAD_INPUT, {"ok": False}, error="--tier: redis or postgresql")
    try:
        targets = deployed_targets(inventory)
        planned = _plan(tier, targets, to)
    except TargetsError as exc:
        return Outcome.from_error(exc)
    except (SentinelError, PatroniError) as exc:
        return Outcome(EXIT_BAD_INPUT, {"ok": False, "tier": tier}, error=str(exc))
    document = {"ok": True, "dry_run": dry_run, **planned.to_dict()}
    if dry_run:
        return Outcome(
            EXIT_OK, document, lines=[f"dry run: would {planned.describe()}"], result="dry-run"
        )
    try:
        confirm(planned.describe(), yes=yes)
    except NotConfirmed as exc:
        return Outcome.from_error(exc)
    try:
        done = _run(tier, targets, planned)
    except MemopsError as exc:
        health, line = probe_line(targets, inventory)
        return Outcome(
            EXIT_FAILED,
            {**document, "ok": False, "health": health},
            lines=[line],
            error=str(exc),
            audit=planned.to_dict(),
        )
    health, line = probe_line(targets, inventory)
    lines = [f"{tier}: primary {done['old']} -> {done['new']} in {done['seconds']} s", line]
    return Outcome(
        EXIT_OK,
        {**document, **done, "health": health},
        lines=lines,
        audit={**planned.to_dict(), **done},
    )


def _plan(tier: str, targets: Targets, to: str) -> Any:
    """The tier's switchover plan (``describe()``, ``to_dict()``); SentinelError: refused."""
    if tier == "redis":
        from memops.ha.redis_switchover import plan_switchover

        return plan_switchover(targets, to)
    if tier == "postgresql":
        from memops.ha import patroni

        return patroni.plan_switchover(targets, to)
    raise SentinelError(f"--tier {tier}: no replicated {tier} engine is wired to switchover yet")


def _run(tier: str, targets: Targets, planned: Any) -> dict[str, Any]:
    if tier == "redis":
        from memops.ha.redis_switchover import run_switchover

        return run_switchover(targets, planned, wait_s=WAIT_S)
    if tier == "postgresql":
        from memops.ha import patroni

        return patroni.run_switchover(targets, planned, wait_s=WAIT_S)
    raise SentinelError(f"--tier {tier}: not wired")


SWITCHOVER = Operation.destructive(
    "switchover",
    switchover,
    tier=options.described(
        options.choices(lambda: SWITCHOVER_TIERS), "the replicated tier: redis or postgresql"
    ),
    to=options.described(
        options.text(forbid=" /"),
        "the replica to promote (its inventory host name or address); default: the engine's choice",
    ),
)
