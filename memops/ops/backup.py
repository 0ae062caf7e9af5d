"""The `backup.*` operations: create, list, verify, restore, prune.

Each resolves the backup settings of the inventory (``memops.backup.settings``),
calls one set-level procedure (``memops.backup.sets``) and turns what happened
into an Outcome: a BackupError is a failure (exit 1), a refusal before anything
was touched (unknown set, namespace or tier, wrong key, corrupt set, not
confirmed) is exit 2.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import psycopg

from memops.backup.artifacts import (
    TIERS,
    BackupError,
    PartialRestore,
    RestoreRefused,
    SetNotFound,
)
from memops.backup.engines import engines
from memops.backup.manifest import ManifestError
from memops.backup.metrics import record_backup
from memops.backup.sets import (
    create_set,
    plan_prune,
    plan_restore,
    prune,
    resolve_set_id,
    restore_set,
)
from memops.backup.settings import TARGET_KINDS, BackupSettings
from memops.backup.verify import verify_set
from memops.deploy.inventory import Inventory
from memops.deploy.targets import Targets, TargetsError
from memops.exitcodes import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK
from memops.ops import options
from memops.ops.confirm import NotConfirmed, confirm
from memops.ops.health import deployed_targets, health_cycle
from memops.ops.runner import Context, Operation, Outcome
from memops.progress import meter
from memops.quarantine import procedure as quarantine
from memops.quarantine.qdrant import QdrantQuarantineError
from memops.quarantine.state import QuarantineStateError


def procedure_options(inventory: Inventory, key: Any) -> dict[str, Any]:
    """What every set procedure takes besides its subject: the key, a scratch place, progress."""
    return {"key": key, "scratch_base": inventory.state_dir / "tmp", "progress": meter().note}


def textfile_dir(targets: Targets) -> Path | None:
    value = targets.deployment.get("textfile_dir")
    return Path(value) if isinstance(value, str) and value else None


def deployed_tiers(targets: Targets) -> tuple[str, ...]:
    kinds = {getattr(t, "kind", None) for t in targets.components.values()}
    return tuple(tier for tier in TIERS if tier in kinds)


def _failed(message: str, *, code: int = EXIT_FAILED, **document: Any) -> Outcome:
    return Outcome(
        code,
        {"ok": False, "error": message, **document},
        error=message,
        result="refused" if code == EXIT_BAD_INPUT else "failed",
    )


def probe_line(targets: Targets, inventory: Inventory) -> tuple[dict[str, Any], str]:
    snapshot, _notes = health_cycle(targets, inventory.state_dir)
    return snapshot.to_dict(), f"health: {snapshot.state}"


def _read_from(manifest: Any, tier: str) -> str:
    """`` (read from replica HOST:PORT)`` when a replicated tier's backup spared its primary."""
    extra = manifest.artifacts[tier].extra
    if extra.get("read_role") == "replica":
        return f" (read from replica {extra.get('read_from')})"
    return ""


# -- backup.create ---------------------------------------------------------------------


def create(
    context: Context, *, tier: Sequence[str], namespace: Sequence[str], target: str
) -> Outcome:
    inventory = context.require_inventory()
    settings = BackupSettings.of(inventory)
    try:
        targets = deployed_targets(inventory)
        tiers = tuple(tier) or deployed_tiers(targets)
        store = settings.store(target or None)
        key = settings.key()
    except (BackupError, TargetsError) as exc:
        return _failed(str(exc), code=EXIT_BAD_INPUT)
    textfile = textfile_dir(targets)
    try:
        with engines(targets, tiers) as opened:
            made = create_set(
                store,
                opened,
                tenants=namespace,
                **procedure_options(inventory, key),
            )
    except BackupError as exc:
        record_backup(inventory.state_dir, textfile, tiers={t: False for t in tiers}, sizes={})
        return _failed(str(exc), tiers=list(tiers))
    verified = made.verify.ok
    record_backup(
        inventory.state_dir, textfile, tiers={t: verified for t in tiers}, sizes=made.tier_sizes
    )
    manifest = made.manifest
    health, health_line = probe_line(targets, inventory)
    counts = {
        t: sum(s.count for s in manifest.artifacts[t].tenants.values()) for t in manifest.tiers
    }
    document = {
        "ok": verified,
        "set_id": manifest.set_id,
        "store": store.description,
        "tiers": list(manifest.tiers),
        "namespaces": list(manifest.namespaces),
        "counts": counts,
        "size_bytes": made.tier_sizes,
        "seconds": round(made.seconds, 3),
        "encrypted": manifest.encryption is not None,
        "verify": made.verify.to_dict(),
        "health": health,
    }
    lines = [f"backup set {manifest.set_id} in {store.description}"]
    lines += [
        f"  {t:<10} {counts[t]:>9} item(s) {made.tier_sizes[t]:>12} bytes{_read_from(manifest, t)}"
        for t in manifest.tiers
    ]
    lines += [f"  verified: {'yes' if verified else made.verify.problem}", health_line]
    for tier, done in made.housekeeping.items():
        lines += [f"  {tier}: {line}" for line in done.get("lines", [])]
    document["housekeeping"] = made.housekeeping
    return Outcome(
        EXIT_OK if verified else EXIT_FAILED,
        document,
        lines=lines,
        error="" if verified else made.verify.problem,
        audit={"set_id": manifest.set_id, "tiers": list(manifest.tiers)},
    )


# -- backup.list / backup.verify ---------------------------------------------------------


def list_sets(context: Context, *, target: str) -> Outcome:
    settings = BackupSettings.of(context.require_inventory())
    try:
        store = settings.store(target or None)
        listing = store.list_sets()
    except BackupError as exc:
        return _failed(str(exc))
    sets: list[dict[str, Any]] = [
        {
            "set_id": m.set_id,
            "started_at": m.started_at.isoformat(),
            "tiers": list(m.tiers),
            "namespaces": list(m.namespaces),
            "size_bytes": m.total_size,
            "encrypted": m.encryption is not None,
        }
        for m in listing.sets
    ]
    lines = [f"{len(sets)} set(s) in {store.description}"] + [
        f"  {s['set_id']}  {','.join(s['tiers']):<26} {s['size_bytes']:>12} bytes"
        + (f"  namespaces: {len(s['namespaces'])}" if s["namespaces"] else "")
        for s in sets
    ]
    if listing.incomplete:
        lines.append(f"  ({len(listing.incomplete)} incomplete, not backups; prune removes them)")
    document = {
        "ok": True,
        "store": store.description,
        "sets": sets,
        "incomplete": [i.set_id for i in listing.incomplete],
    }
    return Outcome(EXIT_OK, document, lines=lines)


def verify(
    context: Context, *, set_id: str, target: str, allow_unencrypted: bool = False
) -> Outcome:
    settings = BackupSettings.of(context.require_inventory())
    try:
        store = settings.store(target or None)
        set_id = resolve_set_id(store, set_id, settings.key())
        report = verify_set(store, set_id, key=settings.key(), allow_unencrypted=allow_unencrypted)
    except (RestoreRefused, SetNotFound) as exc:
        return _failed(str(exc), code=EXIT_BAD_INPUT)
    except BackupError as exc:
        return _failed(str(exc))
    lines = [f"set {set_id}: {'verified' if report.ok else 'FAILED'} ({len(report.files)} files)"]
    lines += [f"  {v.name}: {v.problem}" for v in report.files if not v.ok]
    if not report.content_checked:
        lines.append("  encrypted and no key given: only the stored bytes were checked")
    return Outcome(
        EXIT_OK if report.ok else EXIT_FAILED,
        report.to_dict() | {"ok": report.ok},
        lines=lines,
        error=report.problem,
        audit={"set_id": set_id},
    )


# -- backup.restore --------------------------------------------------------------------


def restore(
    context: Context,
    *,
    set_id: str,
    tier: Sequence[str],
    namespace: Sequence[str],
    target: str,
    dry_run: bool,
    yes: bool,
    drop_old: bool = False,
    allow_unencrypted: bool = False,
) -> Outcome:
    inventory = context.require_inventory()
    settings = BackupSettings.of(inventory)
    try:
        targets = deployed_targets(inventory)
        store = settings.store(target or None)
        key = settings.key()
        set_id = resolve_set_id(store, set_id, key)
        plan = plan_restore(store, set_id, tier, namespace)
    except (RestoreRefused, SetNotFound, ManifestError, TargetsError) as exc:
        return _failed(str(exc), code=EXIT_BAD_INPUT)
    except BackupError as exc:
        return _failed(str(exc))
    planned = plan.describe()
    document: dict[str, Any] = {
        "set_id": set_id,
        "tiers": list(plan.tiers),
        "namespaces": list(plan.tenants),
        "plan": planned,
        "dry_run": dry_run,
    }
    if dry_run:
        lines = [f"dry run: would restore from set {set_id} (nothing changed)"]
        return Outcome(EXIT_OK, {"ok": True, **document}, lines=lines + planned, result="dry-run")
    try:
        what = "namespace(s) " + ", ".join(map(repr, plan.tenants)) if plan.tenants else "all data"
        confirm(f"restore {what} of {', '.join(plan.tiers)} from set {set_id}", yes=yes)
        qdrant = quarantine.qdrant_restore_options(inventory.state_dir, plan.tenants)
        hidden = None if plan.tenants else quarantine.postgres_hidden(inventory.state_dir)
        with engines(targets, plan.tiers) as opened:
            result = restore_set(
                store,
                plan,
                opened,
                tier_options={
                    "postgresql": {"drop_old": drop_old, "set_id": set_id, "quarantined": hidden},
                    "qdrant": qdrant,
                },
                allow_unencrypted=allow_unencrypted,
                **procedure_options(inventory, key),
            )
        quarantine.record_restored_routes(inventory.state_dir, result.reports.get("qdrant", {}))
    except NotConfirmed as exc:
        return _failed(str(exc), code=EXIT_BAD_INPUT, **document)
    except PartialRestore as exc:
        return _partial_outcome(exc, document)
    except (RestoreRefused, QuarantineStateError) as exc:
        return _failed(str(exc), code=EXIT_BAD_INPUT, **document)
    except BackupError as exc:
        return _failed(str(exc), **document)
    try:
        reconciled = (
            []
            if plan.tenants
            else list(result.reports.get("postgresql", {}).get("quarantine", []))
            + quarantine.reconcile_whole_restore(inventory.state_dir, targets, plan.tiers)
        )
    except (psycopg.Error, QdrantQuarantineError, QuarantineStateError, BackupError) as exc:
        message = (
            f"restored from set {set_id}, but the quarantines of quarantine.json could not be "
            f"applied again ({exc}): check `invoke health` and quarantine again"
        )
        return _failed(message, **document)
    health, health_line = probe_line(targets, inventory)
    healthy = health.get("state") != "failing"
    document |= {
        "ok": healthy,
        "reports": result.reports,
        "seconds": round(result.seconds, 3),
        "health": health,
    }
    if reconciled:
        document["quarantine_reconciled"] = reconciled
    lines = [
        f"restored from set {set_id} in {result.seconds:.1f} s",
        *planned,
        *(f"  quarantine kept: {line}" for line in reconciled),
        health_line,
    ]
    return Outcome(
        EXIT_OK if healthy else EXIT_FAILED,
        document,
        lines=lines,
        audit={"set_id": set_id, "tiers": list(plan.tiers), "namespaces": list(plan.tenants)},
    )


def _partial_outcome(exc: PartialRestore, document: dict[str, Any]) -> Outcome:
    """A multi-tier restore that stopped in one tier: which tiers hold the set now."""
    states = exc.tier_states()
    outcome = _failed(str(exc), **document, tier_states=states, reports=exc.reports)
    lines = [f"restore of set {document['set_id']} stopped part way:"]
    lines += [f"  {tier:<11} {state}" for tier, state in states.items()]
    lines.append(
        "  the restored tiers hold the set's data; run the same restore again "
        "once the failed tier's cause is fixed"
    )
    return replace(outcome, lines=lines, audit={"tier_states": states}, result="partial")


# -- backup.prune ----------------------------------------------------------------------


def prune_sets(context: Context, *, target: str, dry_run: bool, yes: bool) -> Outcome:
    settings = BackupSettings.of(context.require_inventory())
    try:
        store = settings.store(target or None)
        policy = settings.policy
        key = settings.key()
    except BackupError as exc:
        return _failed(str(exc), code=EXIT_BAD_INPUT)
    try:
        decisions = plan_prune(store, policy, key=key)
        doomed = [d for d in decisions if not d.keep]
        if not dry_run and doomed:
            confirm(f"remove {len(doomed)} backup set(s) from {store.description}", yes=yes)
        removed = [] if dry_run else prune(store, decisions)
    except NotConfirmed as exc:
        return _failed(str(exc), code=EXIT_BAD_INPUT)
    except BackupError as exc:
        return _failed(str(exc))
    verb = "would remove" if dry_run else "removed"
    lines = [f"{verb} {len(doomed)} of {len(decisions)} set(s) in {store.description}"]
    lines += [f"  {'keep' if d.keep else 'drop'}  {d.set_id}  {d.reason}" for d in decisions]
    document = {
        "ok": True,
        "dry_run": dry_run,
        "store": store.description,
        "decisions": [d.to_dict() for d in decisions],
        "removed": removed,
    }
    return Outcome(
        EXIT_OK,
        document,
        lines=lines,
        result="dry-run" if dry_run else "ok",
        audit={"removed": removed},
    )


def _targets() -> list[str]:
    return list(TARGET_KINDS)


TARGET_OPTION = options.described(
    options.choices(_targets),
    "local or s3 (default: the inventory's backup_target, else local)",
)
NAMESPACES = options.described(
    options.names(), "only this namespace (repeat the option for more; default: whole tiers)"
)
SET_ID = options.described(
    options.set_id(), "the set, as backup.list shows it, or latest / oldest (newest / oldest set)"
)
ALLOW_UNENCRYPTED = options.described(
    options.flag(),
    "with a backup key configured, trust a set that is not encrypted and authenticated with it "
    "(refused by default: anyone who can write to the store can make one)",
)

CREATE = Operation(
    "backup.create",
    create,
    {"tier": options.TIERS, "namespace": NAMESPACES, "target": TARGET_OPTION},
    locks=True,
    playbook="backup",
)
LIST = Operation("backup.list", list_sets, {"target": TARGET_OPTION}, playbook="backup")
VERIFY = Operation(
    "backup.verify",
    verify,
    {"set_id": SET_ID, "target": TARGET_OPTION, "allow_unencrypted": ALLOW_UNENCRYPTED},
    playbook="backup",
)
RESTORE = Operation.destructive(
    "backup.restore",
    restore,
    playbook="restore",
    set_id=SET_ID,
    tier=options.TIERS,
    namespace=NAMESPACES,
    target=TARGET_OPTION,
    drop_old=options.described(
        options.flag(),
        "PostgreSQL whole restore: drop the replaced database (default: keep it as "
        "<db>_pre_<set>_<random> until the next verified backup)",
    ),
    allow_unencrypted=ALLOW_UNENCRYPTED,
)
PRUNE = Operation.destructive("backup.prune", prune_sets, playbook="backup", target=TARGET_OPTION)
