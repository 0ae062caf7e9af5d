"""The `rebuild.*` operations: the memory rebuild runbook, one namespace at a time.

``rebuild.validate`` reads only. It opens every deployed tier (or those given),
checks the namespace's entries (``memops.rebuild.validate``) and exits 0 when all
are good, 1 when any is corrupt, undecryptable or orphaned (or, with
``--benchmark``, when the hit rate is under ``--min-hit-rate``), 2 when the
namespace has nothing in any tier checked: a mistyped tenant is not "clean".
"""

from __future__ import annotations

import contextlib
import shlex
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from memops import faults
from memops.audit import actor
from memops.backup.artifacts import BackupError, RestoreRefused
from memops.backup.engines import engines, tier_target
from memops.backup.manifest import Manifest
from memops.backup.sets import create_set, plan_restore, resolve_set_id, restore_set
from memops.backup.settings import BackupSettings, inventory_vars
from memops.clients import postgres_connect, qdrant_client, redis_client
from memops.deploy.inventory import Inventory, inventory_argument
from memops.deploy.targets import Targets, TargetsError
from memops.errors import MemopsError, Refused, client_failure
from memops.exitcodes import EXIT_FAILED, EXIT_OK
from memops.keys.ring import KeyRing, KeyRingError, keyring_path, load_keyring
from memops.memory.qdrant_points import delete_tenant_points
from memops.memory.values import CORRUPT, UNDECRYPTABLE
from memops.model import DEFAULT_PREFIX, SOURCE_KINDS
from memops.ops import inflight, options
from memops.ops.backup import deployed_tiers, probe_line, procedure_options
from memops.ops.confirm import confirm
from memops.ops.health import deployed_targets
from memops.ops.runner import Context, Operation, Outcome
from memops.progress import meter
from memops.quarantine import procedure as quarantine
from memops.rebuild import hit_rate, soft
from memops.rebuild.redis_clear import ClearError, clear_namespace
from memops.rebuild.reindex import apply_reindex, per_kind, plan_reindex
from memops.rebuild.validate import (
    SHOWN,
    NamespaceReport,
    RedisScope,
    TierReport,
    validate_namespace,
)


@dataclass(frozen=True)
class Scope:
    """The deployed stack as the rebuild operations see it."""

    targets: Targets
    tiers: tuple[str, ...]
    prefix: str
    ring: KeyRing | None


def scope_of(inventory: Inventory, wanted: Sequence[str]) -> Scope:
    """The tiers to act on: those asked for (each must be deployed), or every deployed one."""
    try:
        targets = deployed_targets(inventory)
    except TargetsError as exc:
        raise Refused(str(exc)) from None
    deployed = deployed_tiers(targets)
    missing = [t for t in wanted if t not in deployed]
    if missing:
        raise Refused(f"--tier {','.join(missing)}: not deployed on inventory {inventory.name!r}")
    if not deployed:
        raise Refused(f"inventory {inventory.name!r} has no memory tier deployed")
    try:
        ring = load_keyring(keyring_path(inventory_vars(inventory), inventory.state_dir))
    except KeyRingError as exc:
        raise Refused(str(exc)) from None
    prefix = str((targets.deployment.get("redis") or {}).get("key_prefix") or DEFAULT_PREFIX)
    return Scope(targets, tuple(wanted) or deployed, prefix, ring)


@dataclass
class Clients:
    redis: Any = None
    postgresql: Any = None
    qdrant: Any = None


@contextlib.contextmanager
def open_clients(scope: Scope) -> Iterator[Clients]:
    """A client per tier in scope (admin credentials from targets.json), closed on exit."""
    with contextlib.ExitStack() as stack:
        found = Clients()
        if "redis" in scope.tiers:
            found.redis = redis_client(tier_target(scope.targets, "redis"), timeout_s=60)
            stack.callback(found.redis.close)
        if "postgresql" in scope.tiers:
            target = tier_target(scope.targets, "postgresql")
            found.postgresql = stack.enter_context(postgres_connect(target))
        if "qdrant" in scope.tiers:
            found.qdrant = qdrant_client(tier_target(scope.targets, "qdrant"), timeout_s=60)
            stack.callback(found.qdrant.close)
        yield found


def validate_scope(
    scope: Scope, clients: Clients, namespace: str, *, require_entries: bool = True
) -> NamespaceReport:
    """Validate the namespace in the scope's tiers; Refused when it has no entries at all."""
    report = validate_namespace(
        namespace,
        redis_scope=clients.redis and RedisScope(clients.redis, scope.prefix, scope.ring),
        postgres=clients.postgresql,
        qdrant=clients.qdrant,
    )
    if require_entries and all(t.checked == 0 for t in report.tiers.values()):
        raise Refused(
            f"namespace {namespace!r} has no entries in {', '.join(report.tiers)}: "
            "check the namespace name"
        )
    return report


@contextlib.contextmanager
def validated(
    inventory: Inventory, tier: Sequence[str], namespace: str
) -> Iterator[tuple[Scope, Clients, NamespaceReport]]:
    """The scope, its open clients and the namespace's validation, for a step that needs all."""
    scope = scope_of(inventory, tier)
    with open_clients(scope) as clients:
        yield scope, clients, validate_scope(scope, clients, namespace)


def checked_outcome(
    after: NamespaceReport,
    step: str,
    document: dict[str, Any],
    lines: list[str],
    audit: dict[str, Any],
) -> Outcome:
    """The outcome of a step that changed the namespace: it failed unless it validates clean."""
    error = "" if after.clean else f"namespace {after.tenant!r} is not clean after the {step}"
    code = EXIT_OK if after.clean else EXIT_FAILED
    return Outcome(code, document, lines=lines, error=error, audit=audit)


def namespace_backup(inventory: Inventory, scope: Scope, namespace: str) -> Manifest:
    """A verified backup set of the namespace in the scope's tiers, taken before any change."""
    settings = BackupSettings.of(inventory)
    store = settings.store(None)
    with engines(scope.targets, scope.tiers) as opened:
        made = create_set(
            store, opened, tenants=[namespace], **procedure_options(inventory, settings.key())
        )
    if not made.verify.ok:
        problem = made.verify.problem
        raise BackupError(f"the safety backup did not verify ({problem}): nothing changed")
    return made.manifest


def run_guarded(namespace: str, body: Any) -> Outcome:
    """Run ``body()``; turn refusals and store errors into one-line outcomes."""
    try:
        outcome: Outcome = body()
    except MemopsError as exc:
        return Outcome.from_error(exc, tenant=namespace, **_unchanged(exc))
    except Exception as exc:
        if (failure := client_failure(exc)) is None:
            raise
        return Outcome.from_error(failure, tenant=namespace)
    return outcome


def _unchanged(error: MemopsError) -> dict[str, Any]:
    """A refusal changed nothing, and says so in --json."""
    return {"changed": 0} if isinstance(error, Refused) else {}


# -- rebuild.validate --------------------------------------------------------------------


def validate(
    context: Context, *, namespace: str, tier: Sequence[str], benchmark: bool, min_hit_rate: float
) -> Outcome:
    inventory = context.require_inventory()

    def body() -> Outcome:
        with validated(inventory, tier, namespace) as (_, clients, report):
            rate = hit_rate.measure(report, qdrant=clients.qdrant) if benchmark else None
        return _validate_outcome(report, rate, min_hit_rate)

    return run_guarded(namespace, body)


def _validate_outcome(
    report: NamespaceReport, rate: hit_rate.HitRate | None, min_hit_rate: float
) -> Outcome:
    namespace = report.tenant
    document: dict[str, Any] = {"ok": report.clean, **report.to_dict()}
    lines = validation_lines(report.tenant, list(report.tiers.values()))
    exit_code, error = EXIT_OK, ""
    if not report.clean:
        exit_code = EXIT_FAILED
        error = f"namespace {namespace!r} is not clean: " + ", ".join(
            f"{t.tier} {len(t.offenders)}" for t in report.tiers.values() if t.offenders
        )
    if rate is not None:
        document["benchmark"] = rate.to_dict() | {"min_hit_rate": min_hit_rate}
        lines.append(
            f"hit rate {rate.rate:.1%} over {sum(rate.reads.values())} read(s) "
            f"(bar {min_hit_rate:.0%})"
        )
        if rate.rate < min_hit_rate:
            exit_code = EXIT_FAILED
            document["ok"] = False
            error = error or f"hit rate {rate.rate:.1%} is under --min-hit-rate {min_hit_rate:.0%}"
    return Outcome(
        exit_code,
        document,
        lines=lines,
        error=error,
        result="clean" if exit_code == EXIT_OK else "not-clean",
        audit={"tenant": namespace, "tiers": list(report.tiers)},
    )


# -- rebuild.soft ------------------------------------------------------------------------


def soft_rebuild(
    context: Context,
    *,
    namespace: str,
    tier: Sequence[str],
    include_undecryptable: bool,
    dry_run: bool,
    yes: bool,
) -> Outcome:
    inventory = context.require_inventory()

    def body() -> Outcome:
        with validated(inventory, tier, namespace) as (scope, clients, report):
            plan = soft.plan_soft(report, include_undecryptable=include_undecryptable)
            kept = soft.rows_kept_without_point(report)
            if dry_run or plan.empty:
                return _soft_outcome(plan, None, None, kept, dry_run=dry_run)
            counts = plan.counts()
            confirm(
                f"soft rebuild of {namespace!r}: remove {counts['redis']} Redis value(s), "
                f"soft-delete {counts['postgresql']} row(s), delete {counts['qdrant']}+ point(s)",
                yes=yes,
            )
            manifest = namespace_backup(inventory, scope, namespace)
            done = _apply_soft(scope, clients, plan, manifest.set_id, include_undecryptable)
            after = validate_scope(scope, clients, namespace)
        outcome = _soft_outcome(plan, done, after, kept, dry_run=False, set_id=manifest.set_id)
        health, line = probe_line(scope.targets, inventory)
        return Outcome(
            outcome.exit_code,
            {**outcome.document, "health": health},
            lines=[*outcome.lines, line],
            error=outcome.error,
            result=outcome.result,
            audit=outcome.audit,
        )

    return run_guarded(namespace, body)


def _apply_soft(
    scope: Scope, clients: Clients, plan: soft.SoftPlan, set_id: str, include_undecryptable: bool
) -> soft.SoftDone:
    done = soft.SoftDone()
    verdicts = (CORRUPT, UNDECRYPTABLE) if include_undecryptable else (CORRUPT,)
    if plan.redis_keys:
        done.redis_deleted, done.redis_changed_since = soft.delete_redis_values(
            clients.redis, plan.redis_keys, scope.ring, verdicts
        )
    if plan.rows:
        done.rows_deleted, done.audit_id = soft.soft_delete_rows(
            clients.postgresql, plan.tenant, plan.rows, actor=actor(), set_id=set_id
        )
    if clients.qdrant is not None:
        done.points_deleted = delete_tenant_points(
            clients.qdrant, plan.tenant, soft.by_collection(plan.points)
        )
        done.points_deleted += delete_tenant_points(
            clients.qdrant, plan.tenant, soft.points_of_rows(clients.qdrant, done.rows_deleted)
        )
    return done


def _soft_outcome(
    plan: soft.SoftPlan,
    done: soft.SoftDone | None,
    after: NamespaceReport | None,
    kept: list[str],
    *,
    dry_run: bool,
    set_id: str = "",
) -> Outcome:
    counts = plan.counts()
    document: dict[str, Any] = {
        "ok": True,
        "tenant": plan.tenant,
        "dry_run": dry_run,
        "plan": plan.to_dict(),
        "rows_without_point": kept,
    }
    if dry_run:
        lines = [
            f"dry run: soft rebuild of {plan.tenant!r} would remove {counts['redis']} Redis "
            f"value(s), soft-delete {counts['postgresql']} row(s) (and their points), delete "
            f"{counts['qdrant']} point(s); nothing changed"
        ]
    elif plan.empty:
        lines = [f"nothing to remove: every entry of {plan.tenant!r} that was checked is good"]
    else:
        lines = [f"soft rebuild of {plan.tenant!r} (safety backup {set_id})"]
    lines += [f"  redis value: {key}" for key in plan.redis_keys]
    lines += [f"  row: {row}" for row in plan.rows]
    lines += [f"  point in {c}: {i}" for c, i in plan.points]
    if kept:
        lines.append(
            f"  {len(kept)} row(s) without their point are kept: run rebuild.reindex for them"
        )
    exit_code, error = EXIT_OK, ""
    if done is not None and after is not None:
        document |= {"backup_set": set_id, "done": done.to_dict(), "after": after.to_dict()}
        lines.append(
            f"  removed {done.redis_deleted} value(s) ({done.redis_changed_since} changed since "
            f"and left), soft-deleted {len(done.rows_deleted)} row(s), deleted "
            f"{done.points_deleted} point(s)"
        )
        left = {t.tier: len(t.offenders) for t in after.tiers.values() if t.offenders}
        if left:
            lines.append(
                "  still not clean: " + ", ".join(f"{tier} {n}" for tier, n in left.items())
            )
    changed = 0 if done is None else done.redis_deleted + len(done.rows_deleted)
    document["changed"] = changed + (done.points_deleted if done else 0)
    return Outcome(
        exit_code,
        document,
        lines=lines,
        error=error,
        result="dry-run" if dry_run else "ok",
        audit={"tenant": plan.tenant, "set_id": set_id, **counts, "dry_run": dry_run},
    )


# -- rebuild.hard ------------------------------------------------------------------------


def hard_rebuild(
    context: Context,
    *,
    namespace: str,
    from_backup: str,
    tier: Sequence[str],
    dry_run: bool,
    yes: bool,
) -> Outcome:
    """Safety backup, clear the namespace, restore it from the chosen set, validate, probe.

    The namespace restore of a set replaces the namespace: Redis keys of the
    namespace that the set does not hold are UNLINKed, the tenant's rows are
    replaced in one transaction (the audit log only gains rows), the tenant's
    points are deleted before the set's are written. Other namespaces are not touched.
    """
    inventory = context.require_inventory()
    settings = BackupSettings.of(inventory)

    def body() -> Outcome:
        scope = scope_of(inventory, tier)
        store = settings.store(None)
        nonlocal from_backup  # `latest` / `oldest` name a set from here on
        from_backup = resolve_set_id(store, from_backup, settings.key())
        plan = plan_restore(store, from_backup, scope.tiers, [namespace])
        held = {
            t: plan.manifest.artifacts[t].tenants[namespace].count
            for t in plan.tiers
            if namespace in plan.manifest.artifacts[t].tenants
        }
        with open_clients(scope) as clients:
            # A namespace wiped out entirely is a reason to rebuild it, not a typo:
            # the set must hold it (plan_restore checked).
            before = validate_scope(scope, clients, namespace, require_entries=False)
            now = {t.tier: t.checked for t in before.tiers.values()}
            if clients.postgresql is not None:  # all the tenant's rows, as the set counts them
                now["postgresql"] = clients.postgresql.execute(
                    "SELECT count(*) FROM memory_items WHERE tenant_id = %s", (namespace,)
                ).fetchone()[0]
        document: dict[str, Any] = {
            "ok": True,
            "tenant": namespace,
            "from_backup": from_backup,
            "tiers": list(plan.tiers),
            "now": now,
            "in_set": held,
            "before": before.to_dict(),
            "dry_run": dry_run,
        }
        lines = [
            f"{'dry run: ' if dry_run else ''}hard rebuild of {namespace!r} from set {from_backup}",
            *(
                f"  {t:<11} {now.get(t, 0):>7} entr(ies) now -> {held.get(t, 0):>7} from the set"
                for t in plan.tiers
            ),
        ]
        if dry_run:
            lines.append("  nothing changed")
            return Outcome(EXIT_OK, document, lines=lines, result="dry-run")
        confirm(
            f"replace namespace {namespace!r} in {', '.join(plan.tiers)} with set {from_backup}",
            yes=yes,
        )
        safety = namespace_backup(inventory, scope, namespace)
        put_back = put_back_command(inventory, safety.set_id, namespace, plan.tiers)
        recovery = f"safety backup {safety.set_id}; to put {namespace!r} back: {put_back}"
        inflight.record_recovery(inventory.state_dir, recovery)
        meter().note(recovery)
        cleared: list[Any] = []

        def clear_redis() -> None:  # once the set has verified, before any tier is restored
            if "redis" in plan.tiers:  # server-side batched SCAN + UNLINK, then the set's keys
                with open_clients(Scope(scope.targets, ("redis",), scope.prefix, None)) as only:
                    cleared.append(clear_namespace(only.redis, scope.prefix, namespace))
                faults.point("rebuild.hard.cleared")

        qdrant = quarantine.qdrant_restore_options(inventory.state_dir, [namespace])
        try:
            with engines(scope.targets, plan.tiers) as opened:
                restored = restore_set(
                    store,
                    plan,
                    opened,
                    tier_options={"postgresql": {"set_id": from_backup}, "qdrant": qdrant},
                    before_change=clear_redis,
                    **procedure_options(inventory, settings.key()),
                )
        except RestoreRefused as exc:
            raise RestoreRefused(f"{exc} (safety backup {safety.set_id})") from None
        except (BackupError, ClearError, OSError) as exc:
            raise BackupError(
                f"{exc}; namespace {namespace!r} may be part way: put it back from the safety "
                f"backup with `{put_back}`"
            ) from None
        quarantine.record_restored_routes(inventory.state_dir, restored.reports.get("qdrant", {}))
        cleared_redis = cleared[0] if cleared else None
        with open_clients(scope) as clients:
            after = validate_scope(scope, clients, namespace)
        health, health_line = probe_line(scope.targets, inventory)
        document |= {
            "safety_backup": safety.set_id,
            "redis_cleared": cleared_redis.unlinked if cleared_redis else None,
            "reports": restored.reports,
            "seconds": round(restored.seconds, 3),
            "after": after.to_dict(),
            "health": health,
            "ok": after.clean,
        }
        lines += [
            f"  safety backup {safety.set_id}"
            + (f"; {cleared_redis.unlinked} Redis key(s) cleared" if cleared_redis else "")
            + f"; restored in {restored.seconds:.1f} s",
            *validation_lines(namespace, list(after.tiers.values())),
            health_line,
        ]
        audit = {"tenant": namespace, "from_backup": from_backup, "safety": safety.set_id}
        return checked_outcome(after, "rebuild", document, lines, audit)

    return run_guarded(namespace, body)


def put_back_command(
    inventory: Inventory, set_id: str, namespace: str, tiers: Sequence[str]
) -> str:
    """The command that restores ``namespace`` from ``set_id`` as it was (copy and paste)."""
    return shlex.join(
        [
            "invoke",
            "backup.restore",
            set_id,
            "--namespace",
            namespace,
            "--tier",
            ",".join(tiers),
            "--inventory",
            inventory_argument(inventory),
            "--yes",
        ]
    )


# -- rebuild.reindex ---------------------------------------------------------------------


def reindex(
    context: Context, *, namespace: str, keep_orphans: bool, dry_run: bool, yes: bool
) -> Outcome:
    """Rebuild the namespace's Qdrant points from the embeddings memory_items keeps."""
    inventory = context.require_inventory()

    def body() -> Outcome:
        scope = scope_of(inventory, ("postgresql", "qdrant"))
        routes = quarantine.qdrant_restore_options(inventory.state_dir, [namespace])
        collection_for = quarantine.routed(per_kind, routes.get("quarantined", {}), namespace)
        with open_clients(scope) as clients:
            # planned once, under the stack lock; the apply writes this plan
            plan = plan_reindex(
                clients.postgresql,
                clients.qdrant,
                namespace,
                collection_for=collection_for,
                prune=not keep_orphans,
            )
            planned = plan.result(dry_run=True)
            if planned.rows == 0 and planned.deleted == 0:
                raise Refused(
                    f"namespace {namespace!r} has no indexed live rows and no points: "
                    "check the namespace name"
                )
            lines = [_reindex_line(planned, dry_run=True)]
            changes = planned.created + planned.updated + planned.deleted
            if dry_run or changes == 0:
                if not dry_run:
                    lines = [
                        f"nothing to reindex: {planned.unchanged} point(s) of {namespace!r} match"
                    ]
                return Outcome(
                    EXIT_OK,
                    {"ok": True, "changed": 0, **planned.to_dict()},
                    lines=lines,
                    result="dry-run" if dry_run else "ok",
                )
            confirm(f"reindex {namespace!r}: {changes} point change(s) in Qdrant", yes=yes)
            done = apply_reindex(clients.qdrant, plan)
            if routes:  # quarantined: the release must move back what the reindex wrote
                targets = {per_kind(kind): collection_for(kind) for kind in SOURCE_KINDS}
                used = {c: q for c, q in targets.items() if clients.qdrant.collection_exists(q)}
                quarantine.record_qdrant_routes(inventory.state_dir, {namespace: used})
            after = validate_scope(scope, clients, namespace)
        health, health_line = probe_line(scope.targets, inventory)
        lines = [
            _reindex_line(done, dry_run=False),
            *validation_lines(namespace, list(after.tiers.values())),
            health_line,
        ]
        document = {
            "ok": after.clean,
            "changed": done.created + done.updated + done.deleted,
            **done.to_dict(),
            "after": after.to_dict(),
            "health": health,
        }
        audit = {"tenant": namespace, "changed": document["changed"]}
        return checked_outcome(after, "reindex", document, lines, audit)

    return run_guarded(namespace, body)


def _reindex_line(result: Any, *, dry_run: bool) -> str:
    verb = "dry run: would reindex" if dry_run else "reindexed"
    return (
        f"{verb} {result.tenant!r} from {result.rows} indexed row(s): "
        f"{result.created} created, {result.updated} updated, {result.deleted} deleted, "
        f"{result.unchanged} unchanged"
    )


def validation_lines(tenant: str, tiers: list[TierReport]) -> list[str]:
    lines = [
        f"namespace {tenant!r}",
        f"  {'tier':<11}{'checked':>8}{'good':>8}{'corrupt':>9}{'undecrypt.':>11}{'orphaned':>9}",
    ]
    for t in tiers:
        c = t.counts
        lines.append(
            f"  {t.tier:<11}{t.checked:>8}{c['good']:>8}{c['corrupt']:>9}"
            f"{c['undecryptable']:>11}{c['orphaned']:>9}"
        )
    for t in tiers:
        for o in t.offenders[:SHOWN]:
            where = f" in {o.where}" if o.where else ""
            lines.append(f"  {t.tier} {o.verdict} ({o.reason}){where}: {o.id}")
        if len(t.offenders) > SHOWN:
            lines.append(f"  {t.tier}: {len(t.offenders) - SHOWN} more (see --json)")
    return lines


def _changes_namespace(step: str, body: Callable[..., Outcome], **more: Any) -> Operation:
    """A rebuild step that changes one namespace (--dry-run, --yes, the lock); it runs on
    the inventory's backup host when one is set."""
    return Operation.destructive(
        f"rebuild.{step}", body, playbook="rebuild", namespace=options.NAMESPACE, **more
    )


REINDEX = _changes_namespace(
    "reindex",
    reindex,
    keep_orphans=options.described(
        options.flag(), "keep the namespace's points that no live indexed row wants"
    ),
)
HARD = _changes_namespace(
    "hard",
    hard_rebuild,
    from_backup=options.described(
        options.set_id(),
        "the backup set to restore the namespace from (see backup.list), or latest",
    ),
    tier=options.TIERS,
)
SOFT = _changes_namespace(
    "soft",
    soft_rebuild,
    tier=options.TIERS,
    include_undecryptable=options.described(
        options.flag(), "also remove values sealed with a key the key ring lacks"
    ),
)
VALIDATE = Operation(
    "rebuild.validate",
    validate,
    {
        "namespace": options.NAMESPACE,
        "tier": options.TIERS,
        "benchmark": options.described(
            options.flag(), "also run the scripted read workload and report its hit rate"
        ),
        "min_hit_rate": options.described(
            options.number(default=hit_rate.DEFAULT_MIN_HIT_RATE, at_least=0.0, at_most=1.0),
            "with --benchmark, exit 1 under this hit rate "
            f"(default {hit_rate.DEFAULT_MIN_HIT_RATE:g})",
        ),
    },
    playbook="rebuild",
)
