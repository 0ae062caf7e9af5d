"""`invoke backup.drill`: restore a set (the newest whole one unless named) into scratch
copies and check it."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from memops.backup.artifacts import BackupError
from memops.backup.drill import DrillReport, run_drill
from memops.backup.engines import engines
from memops.backup.metrics import record_drill
from memops.backup.sets import newest_whole_set, resolve_set_id
from memops.backup.settings import BackupSettings, inventory_vars
from memops.deploy.inventory import Inventory
from memops.deploy.targets import TargetsError
from memops.exitcodes import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK
from memops.files import write_private_atomic
from memops.keys.ring import KeyRing, KeyRingError, keyring_path, load_keyring
from memops.ops import options
from memops.ops.backup import (
    TARGET_OPTION,
    deployed_tiers,
    procedure_options,
    textfile_dir,
)
from memops.ops.health import deployed_targets
from memops.ops.runner import Context, Operation, Outcome

REPORT_DIR = "drills"
LAST_REPORT = "last.json"


def drill_outcome(inventory: Inventory, context: Context, *, set_id: str, target: str) -> Outcome:
    settings = BackupSettings.of(inventory)
    try:
        targets = deployed_targets(inventory)
        store = settings.store(target or None)
        key = settings.key()
        manifest = (
            store.read_manifest(resolve_set_id(store, set_id, key))
            if set_id
            else newest_whole_set(store, key)
        )
    except TargetsError as exc:
        return Outcome.refused(str(exc))
    except BackupError as exc:
        return Outcome.refused(str(exc), code=EXIT_BAD_INPUT if set_id else EXIT_FAILED)
    tiers = [t for t in manifest.tiers if t in deployed_tiers(targets)]
    ring, ring_label = drill_keyring(inventory)
    try:
        with engines(targets, tiers) as opened:
            report = run_drill(
                store,
                manifest,
                opened,
                **procedure_options(inventory, key),
                keyring=ring,
                keyring_label=ring_label,
            )
    except BackupError as exc:
        report = DrillReport(manifest.set_id, datetime.now(UTC), problem=str(exc))
    record_drill(
        textfile_dir(targets),
        ok=report.ok,
        duration_s=report.duration_s,
        rto_s=report.rto_s,
        rpo_s=report.rpo_s,
    )
    document = report.to_dict()
    _keep_report(inventory.state_dir, document)
    lines = [f"drill of set {report.set_id}: {'passed' if report.ok else 'FAILED'}"]
    for tier, result in report.tiers.items():
        lines.append(
            f"  {tier:<10} {result['items']:>9} item(s) in {result['seconds']:.2f} s  "
            + ("match" if result["ok"] else f"{result['mismatch_count']} namespace(s) differ")
        )
        if sealed := result.get("sealed"):
            lines.append(f"  {'':<10} {_sealed_line(sealed)}")
    if report.cross_tier is not None:
        lines.append(f"  cross-tier: {report.cross_tier.summary()}")
    lines.append(f"  RTO {report.rto_s} s, RPO {report.rpo_s} s")
    return Outcome(
        EXIT_OK if report.ok else EXIT_FAILED,
        document,
        lines=lines,
        error=report.problem,
        audit={"set_id": report.set_id, "failed_tier": report.failed_tier},
    )


def drill_keyring(inventory: Inventory) -> tuple[KeyRing | None, str]:
    """The key ring the restored values must open with, and how a failure names it."""
    path = keyring_path(inventory_vars(inventory), inventory.state_dir)
    try:
        ring = load_keyring(path)
    except KeyRingError as exc:
        return None, f"that no key ring opens here ({exc})"
    if ring is None:
        return None, f"that no key ring opens here (no key ring at {path})"
    return ring, f"the key ring {path} does not hold"


def _sealed_line(sealed: dict) -> str:
    """The sealed values of the restored Redis copy: per key id, what opened."""
    keys = sealed["key_ids"]
    total = sum(keys.values())
    if not total:
        return "sealed values: none"
    named = ", ".join(f"{k} {n:,}" for k, n in keys.items())
    line = f"sealed values: {total:,} ({named}); {sealed['opened']:,} opened with the key ring"
    if sealed["missing"]:
        line += f", {sum(sealed['missing'].values()):,} under key(s) it lacks"
    if sealed["corrupt"]:
        reasons = ", ".join(f"{r} {n:,}" for r, n in sealed["corrupt"].items())
        line += f", {sum(sealed['corrupt'].values()):,} corrupt ({reasons})"
    return line


def _keep_report(state_dir: Path, document: dict) -> None:
    folder = state_dir / REPORT_DIR
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    text = json.dumps(document, indent=2, sort_keys=True) + "\n"
    write_private_atomic(folder / f"{document['set_id']}.json", text)
    write_private_atomic(folder / LAST_REPORT, text)


def drill(context: Context, *, set_id: str, target: str) -> Outcome:
    return drill_outcome(context.require_inventory(), context, set_id=set_id, target=target)


DRILL = Operation(
    "backup.drill",
    drill,
    {
        "set_id": options.described(
            options.set_id(required=False),
            "the set to drill, or latest / oldest (default: the newest whole set)",
        ),
        "target": TARGET_OPTION,
    },
    locks=True,
    playbook="backup",
)
