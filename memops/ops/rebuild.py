"""The `rebuild.*` operations: the memory rebuild runbook, one namespace at a time.

``rebuild.validate`` reads only. It opens every deployed tier (or those given),
checks the namespace's entries (``memops.rebuild.validate``) and exits 0 when all
are good, 1 when any is corrupt, undecryptable or orphaned (or, with
``--benchmark``, when the hit rate is under ``--min-hit-rate``), 2 when the
namespace has nothing in any tier checked: a mistyped tenant is not "clean".
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from memops.backup.artifacts import TIERS, BackupError
from memops.backup.engines import tier_target
from memops.backup.settings import inventory_vars
from memops.clients import postgres_connect, qdrant_client, redis_client
from memops.exitcodes import EXIT_FAILED, EXIT_OK
from memops.inventory import Inventory
from memops.keyring import KeyRing, KeyRingError, keyring_path, load_keyring
from memops.ops import options
from memops.ops.backup import deployed_tiers
from memops.ops.health import deployed_targets
from memops.ops.runner import Context, Operation, Outcome
from memops.rebuild import hit_rate
from memops.rebuild.validate import SHOWN, RedisScope, TierReport, validate_namespace
from memops.targets import Targets, TargetsError
from memops.workload import DEFAULT_PREFIX


class Refused(Exception):
    """Nothing was touched: exit 2 with this message."""


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


def tier_failure(exc: Exception) -> str | None:
    """The one-line message of a store's client error; None for anything else (a bug)."""
    module = type(exc).__module__.split(".")[0]
    names = {"redis": "redis", "psycopg": "postgresql", "qdrant_client": "qdrant"}
    names |= {"httpx": "qdrant", "httpcore": "qdrant"}
    if module in names:
        return f"{names[module]}: {str(exc).strip() or type(exc).__name__}"
    return None


# -- rebuild.validate --------------------------------------------------------------------


def validate(
    context: Context,
    *,
    namespace: str,
    tier: Sequence[str],
    benchmark: bool,
    min_hit_rate: float,
) -> Outcome:
    inventory = context.require_inventory()
    try:
        scope = scope_of(inventory, tier)
        with open_clients(scope) as clients:
            report = validate_namespace(
                namespace,
                redis_scope=clients.redis and RedisScope(clients.redis, scope.prefix, scope.ring),
                postgres=clients.postgresql,
                qdrant=clients.qdrant,
            )
            rate = hit_rate.measure(report, qdrant=clients.qdrant) if benchmark else None
    except Refused as exc:
        return Outcome.refused(str(exc), tenant=namespace)
    except (BackupError, OSError) as exc:
        return Outcome.failed(str(exc), tenant=namespace)
    except Exception as exc:
        message = tier_failure(exc)
        if message is None:
            raise
        return Outcome.failed(message, tenant=namespace)
    if all(t.checked == 0 for t in report.tiers.values()):
        message = (
            f"namespace {namespace!r} has no entries in {', '.join(report.tiers)}: "
            "check the tenant name"
        )
        return Outcome.refused(message, **report.to_dict())
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


_TIER = options.choices(lambda: TIERS, many=True)

VALIDATE = Operation(
    "rebuild.validate",
    validate,
    options={
        "namespace": options.name_value(),
        "tier": _TIER,
        "benchmark": options.flag(),
        "min_hit_rate": options.number(
            default=hit_rate.DEFAULT_MIN_HIT_RATE, at_least=0.0, at_most=1.0
        ),
    },
)
