"""Quarantine and release of one namespace: the plan, then the change, tier by tier.

Redis: the app user's ACL key patterns stop matching the namespace's keys
(memops.quarantine.redis_acl). PostgreSQL: a row in memory_quarantine, which a row
security policy on memory_items reads (memops.quarantine.postgresql). Qdrant:
the tenant's points move into per-namespace collections the app does not use
(memops.quarantine.qdrant), checked point by point before the source copy
goes. Nothing is expired, and nothing is deleted that is not stored elsewhere.
The record in the state directory (memops.quarantine.state) is what the
deploy and ``invoke health`` read: each tier goes on record once it is done there,
so a run that stops part way leaves the others open, and running it again does them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
import redis
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from memops import faults
from memops.audit import actor
from memops.backup.artifacts import BackupError
from memops.backup.engines import tier_target
from memops.backup.qdrant.tier import QdrantTier
from memops.clients import postgres_connect, redis_client
from memops.deploy.targets import PostgresTarget, QdrantTarget, RedisTarget, Targets, TargetsError
from memops.errors import Refused
from memops.model import NAMESPACE_FIELD, is_quarantine_collection, source_collection
from memops.quarantine import postgresql as postgres_quarantine
from memops.quarantine import qdrant as qdrant_quarantine
from memops.quarantine import redis as redis_quarantine
from memops.quarantine import state as quarantine_state
from memops.quarantine.state import UNFINISHED

IMPLEMENTED_TIERS = ("redis", "postgresql", "qdrant")


class QuarantineRefused(Refused):
    """Nothing was changed: the one-line reason."""


# What a tier can fail with once the run has started: that tier stays open.
TIER_ERRORS: tuple[type[Exception], ...] = (
    QuarantineRefused,
    redis_quarantine.RedisQuarantineError,
    redis.RedisError,
    psycopg.Error,
    qdrant_quarantine.QdrantQuarantineError,
    BackupError,
    httpx.HTTPError,
    ResponseHandlingException,
    UnexpectedResponse,
    OSError,
)


@dataclass
class Plan:
    tenant: str
    quarantine: bool  # False: release
    tiers: tuple[str, ...]
    changes: dict[str, dict[str, Any]] = field(default_factory=dict)  # tier -> what changes

    @property
    def verb(self) -> str:
        return "quarantine" if self.quarantine else "release"

    def to_dict(self) -> dict[str, Any]:
        shown = {
            t: {k: v for k, v in c.items() if not k.startswith("_")}
            for t, c in self.changes.items()
        }
        return {
            "tenant": self.tenant,
            "action": self.verb,
            "tiers": list(self.tiers),
            "changes": shown,
        }


def check_tiers(tiers: tuple[str, ...]) -> None:
    missing = [t for t in tiers if t not in IMPLEMENTED_TIERS]
    if missing:
        raise QuarantineRefused(
            f"quarantine of {', '.join(missing)} is not implemented yet: pass "
            f"--tier {','.join(IMPLEMENTED_TIERS)} to quarantine only those; nothing changed"
        )


def _redis(targets: Targets) -> tuple[RedisTarget, str, str]:
    try:
        target = tier_target(targets, "redis")
    except (TargetsError, BackupError) as exc:
        raise QuarantineRefused(str(exc)) from None
    deployment = targets.deployment.get("redis") or {}
    user, prefix = deployment.get("app_user"), deployment.get("key_prefix")
    if not user or not prefix:
        raise QuarantineRefused(
            "targets.json names no Redis app user or key prefix (deployment.redis): "
            "re-deploy with redis_app_user set; nothing changed"
        )
    return target, str(user), str(prefix)


def plan(
    state_dir: Path, targets: Targets, tenant: str, tiers: tuple[str, ...], *, quarantine: bool
) -> Plan:
    """What (un)quarantining ``tenant`` in ``tiers`` changes; refused when nothing would."""
    check_tiers(tiers)
    namespaces = quarantine_state.load(state_dir)
    todo = _todo(namespaces.get(tenant, {}), tiers, quarantine=quarantine)
    if not todo:
        state = "already quarantined" if quarantine else "not quarantined"
        raise QuarantineRefused(
            f"namespace {tenant!r} is {state} in {', '.join(tiers)}; nothing changed"
        )
    result = Plan(tenant, quarantine, todo)
    if "redis" in todo:
        result.changes["redis"] = _plan_redis(targets, namespaces, tenant, quarantine=quarantine)
    if "postgresql" in todo:
        with postgres_connect(_postgres(targets)) as conn:
            result.changes["postgresql"] = postgres_quarantine.plan(conn, tenant).to_dict()
    if "qdrant" in todo:
        entry = namespaces.get(tenant, {})
        result.changes["qdrant"] = _plan_qdrant(targets, entry, tenant, quarantine=quarantine)
    return result


def _plan_redis(
    targets: Targets, namespaces: dict[str, dict[str, Any]], tenant: str, *, quarantine: bool
) -> dict[str, Any]:
    """The ACL change. Either ACL is accepted as current (a run cut off may have set it)."""
    target, user, prefix = _redis(targets)
    others = [t for t in quarantine_state.tenants_in(namespaces, "redis") if t != tenant]
    with_it = sorted({*others, tenant})
    before, after = (others, with_it) if quarantine else (with_it, others)
    redis_quarantine.check_names([tenant])
    # ACLs are not replicated: every node must hold the same, so a promoted replica serves
    # the application with the quarantine in force. Each node's ACL is checked here. The
    # primary must answer; a replica that does not is changed by the next run (the tier
    # stays open), so a lost replica never stops the quarantine of the rest.
    primary, *replicas = _redis_nodes(targets, target)
    planned = _plan_redis_node(primary, user, prefix, before, after)
    unreachable = []
    for node in replicas:
        try:
            _plan_redis_node(node, user, prefix, before, after)
        except (redis.RedisError, OSError):
            unreachable.append(node.endpoint)
    if unreachable:
        planned["unreachable"] = unreachable
    return planned


def _plan_redis_node(
    node: RedisTarget, user: str, prefix: str, before: list[str], after: list[str]
) -> dict[str, Any]:
    client = redis_client(node)
    try:
        return redis_quarantine.plan(client, user, prefix, before, after)
    finally:
        client.close()


def _plan_qdrant(
    targets: Targets, entry: dict[str, Any], tenant: str, *, quarantine: bool
) -> dict[str, Any]:
    """The points that move (a release: those of the recorded quarantine collections)."""
    recorded = None if quarantine else dict(entry.get("qdrant_moves", {}))
    with QdrantTier(_qdrant(targets)) as tier:
        points = qdrant_quarantine.plan(tier, tenant, recorded)
        arrived = {}
        if recorded is not None:
            half_done = "qdrant" in quarantine_state.open_tiers(entry)
            arrived = qdrant_quarantine.arrived(tier, tenant, recorded, half_done=half_done)
    moves = (
        recorded
        if recorded is not None
        else {c: qdrant_quarantine.quarantine_collection(c, tenant) for c in points}
    )
    deployment = targets.deployment.get("qdrant") or {}
    change = {
        "points": points,
        "app_collections": list(deployment.get("app_collections") or []),
        "_moves": moves,
    }
    if arrived:
        change["arrived_during_quarantine"] = arrived
    return change


def _todo(entry: dict[str, Any], tiers: tuple[str, ...], *, quarantine: bool) -> tuple[str, ...]:
    """The tiers of ``tiers`` a run has to do.

    Those not yet in the wanted state, and those an unfinished run left open: they
    may be half done either way (points in both collections), and every tier's
    change is safe to make again.
    """
    done, left_open = quarantine_state.done_tiers(entry), quarantine_state.open_tiers(entry)
    return tuple(t for t in tiers if (t not in done) == quarantine or t in left_open)


def _qdrant(targets: Targets) -> QdrantTarget:
    try:
        return tier_target(targets, "qdrant")
    except (TargetsError, BackupError) as exc:
        raise QuarantineRefused(str(exc)) from None


def _postgres(targets: Targets) -> PostgresTarget:
    try:
        return tier_target(targets, "postgresql")
    except (TargetsError, BackupError) as exc:
        raise QuarantineRefused(str(exc)) from None


@dataclass
class Progress:
    """What ``execute`` did: the tiers done, and why each of the others failed."""

    done: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # tier -> error, in the order tried

    @property
    def complete(self) -> bool:
        return not self.failed

    def to_dict(self) -> dict[str, Any]:
        return {"done": list(self.done), "open": list(self.failed), "failed": dict(self.failed)}


def execute(state_dir: Path, targets: Targets, planned: Plan) -> Progress:
    """Change the tiers one by one, recording each one in quarantine.json as it is done.

    Before the first change the record lists every planned tier as open, so a run
    that is killed leaves them listed. A tier that fails stays open and the others
    go on (a quarantine protects what it can); running the same command again does
    only the open tiers. Errors writing the record itself are raised.
    """
    _start_record(state_dir, planned)
    progress = Progress()
    for tier in planned.tiers:
        try:
            _APPLY[tier](targets, planned)
        except TIER_ERRORS as exc:
            progress.failed[tier] = str(exc) or type(exc).__name__
            _record_failed(state_dir, planned, tier, progress.failed[tier])
        else:
            progress.done.append(tier)
            _record_done(state_dir, planned, tier)
            faults.point("quarantine.tier" if planned.quarantine else "release.tier")
    return progress


def _apply_redis(targets: Targets, planned: Plan) -> None:
    """The new ACL on every node that answers; one that does not leaves the tier open (the
    same command run again finishes it), never silently a replica that would expose the
    namespace once promoted."""
    target, user, _prefix = _redis(targets)
    missed = []
    for node in _redis_nodes(targets, target):
        client = redis_client(node)
        try:
            redis_quarantine.apply(client, user, planned.changes["redis"]["_target"])
        except redis_quarantine.RedisQuarantineError:
            raise
        except Exception as exc:
            missed.append(f"{node.endpoint} ({type(exc).__name__}: {exc})")
        finally:
            client.close()
    if missed:
        raise redis_quarantine.RedisQuarantineError(
            f"redis: node(s) not changed: {'; '.join(missed)}; run the same command again "
            "once they answer"
        )


def _redis_nodes(targets: Targets, primary: RedisTarget) -> list[RedisTarget]:
    """The nodes whose ACL a quarantine changes: the primary first, then its replicas."""
    from memops.ha import redis_topology

    if not redis_topology.is_replicated(targets):
        return [primary]
    others = [n for n in redis_topology.redis_nodes(targets) if n.endpoint != primary.endpoint]
    return [primary, *others]


def _apply_postgresql(targets: Targets, planned: Plan) -> None:
    with postgres_connect(_postgres(targets)) as conn:
        postgres_quarantine.apply(
            conn, planned.tenant, quarantine=planned.quarantine, actor=actor()
        )


def _apply_qdrant(targets: Targets, planned: Plan) -> None:
    moves = planned.changes["qdrant"]["_moves"]
    with QdrantTier(_qdrant(targets)) as tier:
        if planned.quarantine:
            qdrant_quarantine.quarantine(tier, planned.tenant, list(moves))
        else:
            qdrant_quarantine.release(tier, planned.tenant, moves)


_APPLY: dict[str, Callable[[Targets, Plan], None]] = {
    "redis": _apply_redis,
    "postgresql": _apply_postgresql,
    "qdrant": _apply_qdrant,
}


def _start_record(state_dir: Path, planned: Plan) -> None:
    """Mark every planned tier open (and where the points will go) before any changes."""
    namespaces = quarantine_state.load(state_dir)
    entry = namespaces.setdefault(planned.tenant, {"tiers": []})
    if planned.quarantine:
        entry.setdefault("since", _now())
        entry.setdefault("actor", actor())
        if "qdrant" in planned.changes:  # recorded first: a release finds them after a crash
            entry["qdrant_moves"] = {
                **entry.get("qdrant_moves", {}),
                **planned.changes["qdrant"]["_moves"],
            }
    run = {"action": planned.verb, "started": _now(), "actor": actor()}
    entry[UNFINISHED] = {**entry.get(UNFINISHED, {}), **{t: dict(run) for t in planned.tiers}}
    quarantine_state.save(state_dir, namespaces)


def _record_done(state_dir: Path, planned: Plan, tier: str) -> None:
    namespaces = quarantine_state.load(state_dir)
    entry = namespaces[planned.tenant]
    tiers = set(entry.get("tiers", ()))
    entry["tiers"] = sorted(tiers | {tier} if planned.quarantine else tiers - {tier})
    if tier == "qdrant" and not planned.quarantine:
        entry.pop("qdrant_moves", None)
    entry[UNFINISHED].pop(tier, None)
    if not entry[UNFINISHED]:
        del entry[UNFINISHED]
        if not entry["tiers"]:
            del namespaces[planned.tenant]
    quarantine_state.save(state_dir, namespaces)


def _record_failed(state_dir: Path, planned: Plan, tier: str, error: str) -> None:
    namespaces = quarantine_state.load(state_dir)
    namespaces[planned.tenant][UNFINISHED][tier]["error"] = error
    quarantine_state.save(state_dir, namespaces)


def qdrant_restore_options(state_dir: Path, tenants: Sequence[str]) -> dict[str, Any]:
    """The Qdrant options of a namespace restore: where quarantined tenants' points go.

    A restore (backup.restore --namespace, rebuild.hard) of a tenant quarantined in
    Qdrant writes into its quarantine collections, so the restore neither exposes
    it to the application nor gets undone by the release moving the old points back.
    """
    namespaces = quarantine_state.load(state_dir)
    routes = {
        tenant: dict(namespaces[tenant].get("qdrant_moves", {}))
        for tenant in tenants
        if "qdrant" in namespaces.get(tenant, {}).get("tiers", ())
    }
    return {"quarantined": routes} if routes else {}


def routed(
    collection_for: Callable[[str], str], quarantined: Mapping[str, Mapping[str, str]], tenant: str
) -> Callable[[str], str]:
    """``collection_for``, sending a quarantined tenant to its quarantine collections."""
    if tenant not in quarantined:
        return collection_for
    moves = quarantined[tenant]

    def quarantine_side(kind: str) -> str:
        source = collection_for(kind)
        return moves.get(source) or qdrant_quarantine.quarantine_collection(source, tenant)

    return quarantine_side


def record_restored_routes(state_dir: Path, report: dict[str, Any]) -> None:
    """Add the quarantine collections a restore wrote to the record: the release moves them."""
    record_qdrant_routes(state_dir, report.get("quarantine_routes") or {})


def record_qdrant_routes(state_dir: Path, routes: Mapping[str, Mapping[str, str]]) -> None:
    """Merge source -> quarantine collection moves into the tenants' record entries."""
    if not routes:
        return
    namespaces = quarantine_state.load(state_dir)
    for tenant, moves in routes.items():
        if tenant in namespaces:
            namespaces[tenant]["qdrant_moves"] = {
                **namespaces[tenant].get("qdrant_moves", {}),
                **moves,
            }
    quarantine_state.save(state_dir, namespaces)


def postgres_hidden(state_dir: Path) -> list[str]:
    """The tenants a whole PostgreSQL restore must leave hidden: quarantine.json's."""
    return quarantine_state.tenants_in(quarantine_state.load(state_dir), "postgresql")


def reconcile_whole_restore(state_dir: Path, targets: Targets, tiers: Sequence[str]) -> list[str]:
    """Make a whole restore's quarantine state the record's again; what changed, as lines.

    A whole set carries the quarantine of when it was taken (memory_quarantine rows,
    memops-quarantine-* collections), while quarantine.json says what operators
    want now, and a restore must not lift a quarantine (nor impose a lifted one).
    PostgreSQL: rows added or removed to match the record. Qdrant: a tenant
    quarantined now has its restored points moved out of the shared collections; a
    restored quarantine collection of a tenant not quarantined now goes back.
    """
    namespaces = quarantine_state.load(state_dir)
    lines: list[str] = []
    if "postgresql" in tiers:
        wanted = set(quarantine_state.tenants_in(namespaces, "postgresql"))
        with postgres_connect(_postgres(targets)) as conn:
            found = postgres_quarantine.quarantined(conn)
            for tenant in sorted(wanted ^ found):
                postgres_quarantine.apply(conn, tenant, quarantine=tenant in wanted, actor=actor())
                verb = "hidden again" if tenant in wanted else "no longer hidden"
                lines.append(f"postgresql: {tenant!r} {verb} (quarantine.json)")
    if "qdrant" in tiers:
        with QdrantTier(_qdrant(targets)) as tier:
            lines += _reconcile_qdrant(state_dir, tier, namespaces)
    return lines


def _reconcile_qdrant(
    state_dir: Path, tier: QdrantTier, namespaces: dict[str, dict[str, Any]]
) -> list[str]:
    lines = []
    wanted = quarantine_state.tenants_in(namespaces, "qdrant")
    for tenant in wanted:
        shared = qdrant_quarantine.plan(tier, tenant, None)
        if shared:
            moves = qdrant_quarantine.quarantine(tier, tenant, sorted(shared))
            namespaces[tenant]["qdrant_moves"] = {
                **namespaces[tenant].get("qdrant_moves", {}),
                **moves,
            }
            lines.append(f"qdrant: {sum(shared.values())} point(s) of {tenant!r} quarantined again")
    recorded = {q for t in wanted for q in namespaces[t].get("qdrant_moves", {}).values()}
    candidates = tier.collections()
    for name in candidates:
        if not is_quarantine_collection(name) or name in recorded:
            continue
        tenants = {str(p["payload"].get(NAMESPACE_FIELD)) for p in tier.scroll(name)}
        if not tenants:
            tier.client.delete_collection(name)  # an empty one a set carried: memops' own
            continue
        sources = {t: source_collection(name, t, candidates) for t in tenants}
        if len(tenants) != 1 or None in sources.values():
            lines.append(f"qdrant: {name!r} left as restored: it is no tenant's quarantine")
            continue
        tenant = tenants.pop()
        qdrant_quarantine.release(tier, tenant, {str(sources[tenant]): name})
        lines.append(f"qdrant: points of {tenant!r} back in {sources[tenant]!r} (not quarantined)")
    quarantine_state.save(state_dir, namespaces)
    return lines


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
