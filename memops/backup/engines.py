"""One backup engine per tier, built from what the deploy recorded in targets.json.

Every engine offers the same three calls, so the set-level procedures
(create, restore, drill) never care which store they talk to:
``backup(staging, tenants=)`` -> TierArtifact, ``restore(staging, artifact,
tenants=)`` -> report, ``tenant_summaries(tenants)`` -> counts and checksums
of the live data, computed the way the backup computes them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

from memops.backup.artifacts import (
    TIERS,
    BackupError,
    ScratchCopy,
    TenantSummary,
    TierArtifact,
)
from memops.deploy.targets import PostgresTarget, QdrantTarget, RedisTarget, Targets
from memops.errors import client_failure


class TierEngine(Protocol):
    def backup(self, staging: Path, *, tenants: Sequence[str] | None = None) -> TierArtifact: ...

    @property
    def restore(self) -> Callable[..., dict[str, Any]]:
        """restore(staging, artifact, *, tenants=None, **the engine's own options) -> report."""
        ...

    def after_verified_set(self, artifact: TierArtifact) -> dict[str, Any]:
        """Clean up what waited for the next verified set (reported: {"lines": [...]})."""
        ...

    def tenant_summaries(
        self, *, tenants: Sequence[str] | None = None
    ) -> dict[str, TenantSummary]: ...

    def scratch_restore(
        self, staging: Path, artifact: TierArtifact
    ) -> contextlib.AbstractContextManager[ScratchCopy]:
        """Restore into a private copy (the drill), removed when the block ends."""
        ...

    def close(self) -> None: ...


def tier_target(targets: Targets, tier: str) -> Any:
    """The deployed component of ``tier``; BackupError when the deploy recorded none."""
    kinds = {"redis": RedisTarget, "postgresql": PostgresTarget, "qdrant": QdrantTarget}
    found = [t for t in targets.components.values() if isinstance(t, kinds[tier])]
    if not found:
        raise BackupError(f"no {tier} is deployed for inventory {targets.inventory!r}")
    if len(found) > 1 and tier == "redis":
        return _redis_primary(targets)
    if len(found) > 1 and tier == "postgresql":
        return _postgres_leader(targets)
    if len(found) > 1:
        raise BackupError(f"{len(found)} {tier} components deployed: back up one at a time")
    return found[0]


def _redis_read_node(targets: Targets) -> RedisTarget | None:
    """Where a backup of a replicated Redis tier reads: a replica in sync (None: the primary)."""
    from memops.ha import redis_topology

    if not redis_topology.is_replicated(targets):
        return None
    return redis_topology.replica_in_sync(targets)


def _redis_primary(targets: Targets) -> RedisTarget:
    """A replicated Redis tier's primary, as its Sentinels name it now."""
    from memops.ha import redis_topology
    from memops.ha.sentinel import SentinelError

    if not redis_topology.sentinels(targets):
        raise BackupError("several Redis nodes are deployed and no Sentinel: which is primary?")
    try:
        return redis_topology.primary_target(targets)
    except SentinelError as exc:
        raise BackupError(str(exc)) from None


def _postgres_leader(targets: Targets) -> PostgresTarget:
    """A PostgreSQL tier run by Patroni: the member that leads now, as Patroni says."""
    from memops.ha.patroni import PatroniError, find_leader, is_patroni

    if not is_patroni(targets):
        raise BackupError("several PostgreSQL servers are deployed and no Patroni: which leads?")
    try:
        return find_leader(targets)
    except PatroniError as exc:
        raise BackupError(str(exc)) from None


def _postgres_reader(targets: Targets) -> PostgresTarget | None:
    """Where a replicated PostgreSQL tier's backups read: a running standby that Patroni
    reports caught up (the synchronous one first); None (the leader) when there is none."""
    from memops.ha.patroni import PatroniError, healthy_standby, is_patroni

    if not is_patroni(targets):
        return None
    try:
        return healthy_standby(targets)
    except PatroniError:
        return None


def open_engine(tier: str, targets: Targets) -> TierEngine:
    target = tier_target(targets, tier)
    # A replicated tier records each member's deployment under its component name.
    settings = dict(targets.deployment.get(tier) or targets.deployment.get(target.name) or {})
    if tier == "qdrant":
        from memops.backup.qdrant.tier import QdrantTier

        return QdrantTier(target)
    if tier == "redis":
        from memops.backup.redis.tier import RedisTier

        return RedisTier.from_deployment(target, settings, read_from=_redis_read_node(targets))
    if tier == "postgresql":
        from memops.backup.postgresql.tier import PostgresTier

        return PostgresTier.from_deployment(target, settings, reader=_postgres_reader(targets))
    raise BackupError(f"unknown tier {tier!r}: expected one of {', '.join(TIERS)}")


@contextlib.contextmanager
def engines(targets: Targets, tiers: Sequence[str]) -> Iterator[dict[str, TierEngine]]:
    """The engines of ``tiers``, closed again when the block ends."""
    opened: dict[str, TierEngine] = {}
    try:
        for tier in tiers:
            opened[tier] = open_engine(tier, targets)
        yield opened
    finally:
        for engine in opened.values():
            with contextlib.suppress(Exception):
                engine.close()


@contextlib.contextmanager
def tier_errors(tier: str) -> Iterator[None]:
    """A client library's or the OS's error inside a tier step, as one BackupError line."""
    try:
        yield
    except BackupError:
        raise
    except Exception as exc:
        if (failure := client_failure(exc, tier)) is None:
            raise
        raise BackupError(str(failure)) from None
