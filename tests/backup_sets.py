"""Helpers for the backup-core tests: a staged tier artifact and a written set."""

from __future__ import annotations

import gzip
import os
import subprocess
from dataclasses import replace
from datetime import datetime
from pathlib import Path

from memops.backup.artifacts import TenantSummary, TierArtifact
from memops.backup.crypto import BackupKey
from memops.backup.manifest import Manifest
from memops.backup.set_ids import new_set_id
from memops.backup.store import BackupStore

TENANTS = ("acme", "acme:eu", "glob*star", "[brackets]")


def stage_redis(staging: Path, *, rdb_size: int = 300_000) -> TierArtifact:
    """A Redis-like artifact: a binary 'RDB' and one zstd-compressed namespace dump."""
    staging.mkdir(parents=True, exist_ok=True)
    (staging / "dump.rdb").write_bytes(os.urandom(rdb_size))
    plain = b"".join(b'{"key":"k%d","ttl":86400}\n' % i for i in range(20_000))
    (staging / "ns").mkdir(exist_ok=True)
    subprocess.run(
        ["zstd", "-q", "-f", "-o", str(staging / "ns" / "acme.jsonl.zst")],
        input=plain,
        check=True,
    )
    return TierArtifact(
        tier="redis",
        files=("dump.rdb", "ns/acme.jsonl.zst"),
        tenants={t: TenantSummary(10, "sha256:" + "0" * 64) for t in TENANTS},
        versions={"redis": "7.0.15", "rdb_format": "10"},
        positions={"lastsave": 1767312000, "master_repl_offset": 1234},
        kinds={"dump.rdb": "rdb"},
    )


def stage_postgres(staging: Path) -> TierArtifact:
    staging.mkdir(parents=True, exist_ok=True)
    with gzip.open(staging / "memory.pgdump.gz", "wb") as handle:
        handle.write(b"PGDMP" + os.urandom(50_000))
    return TierArtifact(
        tier="postgresql",
        files=("memory.pgdump.gz",),
        tenants={"": TenantSummary(100, "sha256:" + "1" * 64)},
        versions={"postgresql": "15.8"},
        positions={"lsn": "0/3000060"},
    )


def write_set(
    store: BackupStore,
    tmp: Path,
    *,
    key: BackupKey | None = None,
    set_id: str | None = None,
    namespaces: tuple[str, ...] = (),
    taken_at: datetime | None = None,
) -> tuple[Manifest, dict[str, Path]]:
    """A two-tier set in ``store``; returns its manifest and the staged source of each file.

    With ``namespaces`` it is a namespace set (as ``--namespace`` makes: each tier's
    scope is "namespaces"); ``taken_at`` dates it (its start) instead of now.
    """
    set_id = set_id or new_set_id(taken_at)
    scope = "namespaces" if namespaces else "full"
    redis = replace(stage_redis(tmp / "stage-redis"), scope=scope)
    postgres = replace(stage_postgres(tmp / "stage-pg"), scope=scope)
    writer = store.begin_set(set_id, key=key)
    if taken_at is not None:
        writer.started_at = taken_at
    writer.add_tier(redis, tmp / "stage-redis")
    writer.add_tier(postgres, tmp / "stage-pg")
    manifest = writer.finish(namespaces=namespaces, tool_versions={"zstd": "1.5.4"})
    sources = {f"redis/{n}": tmp / "stage-redis" / n for n in redis.files}
    sources |= {f"postgresql/{n}": tmp / "stage-pg" / n for n in postgres.files}
    return manifest, sources
