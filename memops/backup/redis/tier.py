"""The Redis engine of a backup set: the whole RDB, or one file per namespace.

A full backup is the server's own RDB (BGSAVE, checked by ``redis-check-rdb``,
``memops.backup.redis.full``). A namespace backup is a dump of that tenant's
keys with their absolute expiry (``memops.backup.redis.ns_export``). A
namespace restore takes the namespace's dump, or, from a full set, loads the
RDB into a private scratch server and exports the namespace from there; it is
restored with RESTORE … ABSTTL REPLACE, and the namespace's keys that the set
does not hold are removed.

A whole restore loads the set's RDB into a scratch server and copies it into
the live server through its own connection (``memops.backup.redis.whole``): with
AOF on, as the role deploys Redis, replacing dump.rdb would restore nothing
(Redis loads the AOF at start-up), so the files are never swapped. The drill
loads the RDB into a scratch server the same way.
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from memops.backup.artifacts import (
    BackupError,
    ScratchCopy,
    TenantSummary,
    TierArtifact,
    tenant_token,
)
from memops.backup.redis.full import RDB_FILE, backup_full, check_rdb
from memops.backup.redis.ns_export import export_namespace, summarize
from memops.backup.redis.ns_restore import restore_namespace
from memops.backup.redis.server import server_version
from memops.backup.redis.whole import restore_whole
from memops.backup.scratch import scratch_redis
from memops.backup.sealed_keys import KEY_IDS_DUMPS, KEY_IDS_LIVE, key_ids_extra
from memops.backup.verify import register_checker
from memops.clients import redis_client
from memops.deploy.targets import RedisTarget
from memops.memory.redis_scan import NOT_SEALED, key_id_counts
from memops.model import DEFAULT_PREFIX

TIER = "redis"


def _check_rdb_file(path: Path, _record: Any) -> None:
    check_rdb(path)


register_checker("rdb", _check_rdb_file)


def namespace_file(tenant: str) -> str:
    return f"{tenant_token(tenant)}.ns"


class RedisTier:
    """Backs up from ``read_from`` (a replica in sync, in a replicated tier; else the
    primary) and restores into ``target``, the primary."""

    def __init__(
        self,
        target: RedisTarget,
        *,
        prefix: str = DEFAULT_PREFIX,
        read_from: RedisTarget | None = None,
    ) -> None:
        self.target = target
        self.prefix = prefix
        self.client = redis_client(target, timeout_s=60)
        self.source = read_from or target
        self.read_client = (
            self.client if read_from is None else redis_client(read_from, timeout_s=60)
        )

    @classmethod
    def from_deployment(
        cls, target: RedisTarget, deployment: dict[str, Any], read_from: RedisTarget | None = None
    ) -> RedisTier:
        prefix = str(deployment.get("key_prefix") or DEFAULT_PREFIX)
        return cls(target, prefix=prefix, read_from=read_from)

    def close(self) -> None:
        self.client.close()
        if self.read_client is not self.client:
            self.read_client.close()

    # ------------------------------------------------------------------ backup

    def backup(self, staging: Path, *, tenants: Sequence[str] | None = None) -> TierArtifact:
        if tenants is None:
            artifact = backup_full(self.read_client, staging, server=self.source)
            # The RDB is opaque here: the key ids are counted on the live server right after
            # the BGSAVE (no rotation runs meanwhile: both hold the stack lock).
            counted = key_id_counts(self.read_client, self.prefix)
            counted.pop(NOT_SEALED, None)
            extra = {**self._extra(), **key_ids_extra(counted, KEY_IDS_LIVE)}
            return replace(artifact, kinds={RDB_FILE: "rdb"}, extra=extra)
        version = server_version(self.read_client)
        files, summaries = [], {}
        key_ids: Counter[str] = Counter()
        for tenant in tenants:
            name = namespace_file(tenant)
            digest, _size = export_namespace(
                self.read_client, self.prefix, tenant, staging / name, meta={"redis": version}
            )
            files.append(name)
            summaries[tenant] = digest.summary()
            if digest.key_ids is not None:
                key_ids.update(digest.key_ids.counts)
        return TierArtifact(
            tier=TIER,
            scope="namespaces",
            files=tuple(files),
            tenants=summaries,
            versions={"redis": version},
            positions={},
            extra={
                **self._extra(),
                "namespace_files": dict(zip(tenants, files, strict=True)),
                **key_ids_extra(key_ids, KEY_IDS_DUMPS),
            },
        )

    def _extra(self) -> dict[str, Any]:
        """The prefix, and which node the backup read (a replica spares the primary)."""
        role = "primary" if self.source is self.target else "replica"
        return {"prefix": self.prefix, "read_from": self.source.endpoint, "read_role": role}

    # ----------------------------------------------------------------- restore

    def restore(
        self, staging: Path, artifact: TierArtifact, *, tenants: Sequence[str] | None = None
    ) -> dict[str, Any]:
        if tenants is None and artifact.scope == "full":
            with scratch_redis(staging / RDB_FILE) as scratch, redis_client(scratch) as client:
                done = restore_whole(self.client, client, staging, dict(artifact.versions))
            return {"whole": done.to_dict(), "aof": done.persisted}
        if tenants is None:  # a namespace set: all of its namespaces
            tenants = list(artifact.extra.get("namespace_files") or {})
        prefix = str(artifact.extra.get("prefix") or self.prefix)
        report: dict[str, Any] = {}
        with self._namespace_files(staging, artifact, tenants, prefix) as files:
            for tenant in tenants:
                restored = restore_namespace(
                    self.client,
                    files[tenant],
                    artifact.versions,
                    prefix=prefix,
                    tenant=tenant,
                    replace_namespace=True,
                )
                report[tenant] = {
                    "restored": restored.restored,
                    "expired_skipped": restored.expired_skipped,
                    "deleted": restored.deleted,
                }
        return {"namespaces": report, "aof": "restored through the running server (AOF logs it)"}

    @contextlib.contextmanager
    def _namespace_files(
        self, staging: Path, artifact: TierArtifact, tenants: Sequence[str], prefix: str
    ) -> Iterator[dict[str, Path]]:
        """One dump per tenant: the set's own, or exported from its RDB in a scratch server."""
        named = artifact.extra.get("namespace_files") or {}
        if artifact.scope == "namespaces":
            yield {t: staging / named[t] for t in tenants}
            return
        with scratch_redis(staging / RDB_FILE) as scratch, redis_client(scratch) as client:
            files = {}
            for tenant in tenants:
                path = staging / f"from-rdb-{namespace_file(tenant)}"
                export_namespace(client, prefix, tenant, path, meta=dict(artifact.versions))
                files[tenant] = path
            yield files

    def after_verified_set(self, artifact: TierArtifact) -> dict[str, Any]:
        """A whole Redis restore keeps nothing aside: nothing waits for the next set."""
        return {}

    # -------------------------------------------------------------- reading/drill

    def tenant_summaries(self, tenants: Sequence[str] | None = None) -> dict[str, TenantSummary]:
        if tenants is None:
            raise BackupError("redis: name the tenants to summarize")
        return {t: summarize(self.client, self.prefix, t).summary() for t in tenants}

    @contextlib.contextmanager
    def scratch_restore(self, staging: Path, artifact: TierArtifact) -> Iterator[ScratchCopy]:
        """The set's RDB (or namespace dumps) loaded into a private redis-server.

        The copy's ``connection`` is a client of that server (the drill reads its values).
        """
        started = time.monotonic()
        if artifact.scope == "namespaces":
            with scratch_redis(None) as target, redis_client(target) as client:
                prefix = str(artifact.extra.get("prefix") or self.prefix)
                named = artifact.extra.get("namespace_files") or {}
                for tenant, name in named.items():
                    restore_namespace(
                        client, staging / name, artifact.versions, prefix=prefix, tenant=tenant
                    )
                seconds = time.monotonic() - started
                summaries = {t: summarize(client, prefix, t).summary() for t in named}
                yield ScratchCopy(summaries, seconds, connection=client)
            return
        rdb = staging / RDB_FILE
        with scratch_redis(rdb) as target, redis_client(target) as client:
            seconds = time.monotonic() - started
            expected = artifact.tenants.get("")
            loaded = client.info("persistence")
            # Loading drops keys whose expiry has passed; the file's count includes them.
            keys = int(loaded.get("rdb_last_load_keys_loaded", client.dbsize())) + int(
                loaded.get("rdb_last_load_keys_expired", 0)
            )
            checksum = expected.checksum if expected else ""
            # The scratch server loaded exactly the verified file (its sha256 is the set's):
            # what is left to compare is how many keys it read from it.
            yield ScratchCopy({"": TenantSummary(keys, checksum)}, seconds, connection=client)
