"""The restore drill: restore a set into scratch copies and prove it is what was saved.

Never the live data: Redis comes back in a private redis-server on a free
port, PostgreSQL in a scratch database, Qdrant in scratch collections. Each
tier's restored counts and content checksums are compared with the
manifest's, per tenant; then the tiers are checked against each other
(every Qdrant point has its live, indexed ``memory_items`` row and the
reverse). The restored Redis copy's sealed values must open with the current
key ring: each value is read for the key id it names, a value naming a key the
ring lacks fails the drill (naming the key id), and a sample of each key's
values is decrypted (``memops.backup.sealed_keys.check_sealed``). RTO is the
time the restores took, RPO the age of the set when the drill began. The scratch
copies are removed whatever happens.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from memops.backup.artifacts import BackupError, ScratchCopy, TenantSummary
from memops.backup.cross_tier import CrossTierReport, check_cross_tier
from memops.backup.engines import TierEngine, tier_errors
from memops.backup.manifest import Manifest
from memops.backup.sealed_keys import check_sealed
from memops.backup.sets import Progress, _quiet, work_dir
from memops.backup.store import BackupStore
from memops.backup.verify import verify_set
from memops.keys.ring import KeyRing

SHOWN = 5


@dataclass
class DrillReport:
    set_id: str
    started_at: datetime
    ok: bool = False
    problem: str = ""
    failed_tier: str = ""
    tiers: dict[str, dict[str, Any]] = field(default_factory=dict)
    cross_tier: CrossTierReport | None = None
    rto_s: float | None = None
    rpo_s: float | None = None
    duration_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "set_id": self.set_id,
            "started_at": self.started_at.isoformat(timespec="seconds"),
            "problem": self.problem,
            "failed_tier": self.failed_tier,
            "tiers": self.tiers,
            "cross_tier": self.cross_tier.to_dict() if self.cross_tier else None,
            "rto_seconds": self.rto_s,
            "rpo_seconds": self.rpo_s,
            "duration_seconds": round(self.duration_s, 3),
        }


def compare_summaries(
    expected: Mapping[str, TenantSummary], restored: Mapping[str, TenantSummary]
) -> list[str]:
    """Tenants whose count or checksum differs (empty when the copy matches the set)."""
    problems = []
    for tenant in sorted(set(expected) | set(restored)):
        want, got = expected.get(tenant), restored.get(tenant)
        if want is None or got is None or want.count != got.count or want.checksum != got.checksum:
            have = f"{got.count} item(s)" if got else "nothing"
            need = f"{want.count}" if want else "none"
            problems.append(f"{tenant!r}: restored {have}, the set holds {need}")
    return problems


def run_drill(
    store: BackupStore,
    manifest: Manifest,
    engines: Mapping[str, TierEngine],
    *,
    key: Any = None,
    scratch_base: Path | None = None,
    progress: Progress = _quiet,
    keyring: KeyRing | None = None,
    keyring_label: str = "no key ring holds",
) -> DrillReport:
    """``keyring``: the ring sealed values must open with (None: there is none);
    ``keyring_label`` completes "sealed values name key(s) …" in a failure."""
    began = time.monotonic()
    report = DrillReport(manifest.set_id, datetime.now(UTC))
    report.rpo_s = round((report.started_at - manifest.finished_at).total_seconds(), 3)
    try:
        with work_dir(scratch_base, "drill") as work, contextlib.ExitStack() as copies:
            kept = work / "set"
            kept.mkdir(mode=0o700)
            progress(f"verifying set {manifest.set_id}")
            verified = verify_set(store, manifest.set_id, key=key, keep_dir=kept)
            if not verified.ok:
                raise _TierFailed("", verified.problem)
            restored: dict[str, ScratchCopy] = {}
            for tier in manifest.tiers:
                if tier not in engines:
                    continue
                progress(f"{tier}: restoring into a scratch copy")
                artifact = manifest.artifacts[tier]
                try:
                    with tier_errors(tier):
                        scratch = engines[tier].scratch_restore(kept / tier, artifact)
                        copy = copies.enter_context(scratch)
                except BackupError as exc:
                    raise _TierFailed(tier, str(exc)) from None
                restored[tier] = copy
                problems = compare_summaries(artifact.tenants, copy.summaries)
                report.tiers[tier] = {
                    "ok": not problems,
                    "items": sum(s.count for s in copy.summaries.values()),
                    "seconds": round(copy.seconds, 3),
                    "mismatches": problems[:SHOWN],
                    "mismatch_count": len(problems),
                }
                if problems:
                    raise _TierFailed(tier, f"{len(problems)} tenant(s) differ: {problems[0]}")
                if tier == "redis" and copy.connection is not None:
                    progress("redis: opening sealed values with the key ring")
                    prefix = artifact.extra.get("prefix") or getattr(engines[tier], "prefix", "")
                    try:
                        with tier_errors(tier):
                            sealed = check_sealed(copy.connection, str(prefix), keyring)
                    except BackupError as exc:
                        raise _TierFailed(tier, str(exc)) from None
                    report.tiers[tier]["sealed"] = sealed.to_dict()
                    if not sealed.ok:
                        raise _TierFailed(tier, sealed.problem(keyring_label))
            report.rto_s = round(sum(c.seconds for c in restored.values()), 3)
            pg, qd = restored.get("postgresql"), restored.get("qdrant")
            if pg is not None and qd is not None and pg.connection is not None:
                report.cross_tier = check_cross_tier(pg.connection, qd.points or [])
                if not report.cross_tier.ok:
                    raise _TierFailed("cross-tier", report.cross_tier.summary())
            report.ok = True
    except _TierFailed as failure:
        report.failed_tier, report.problem = failure.tier, failure.message
    except BackupError as exc:
        report.problem = str(exc)
    report.duration_s = time.monotonic() - began
    return report


class _TierFailed(Exception):
    def __init__(self, tier: str, message: str) -> None:
        super().__init__(message)
        self.tier = tier
        self.message = f"{tier}: {message}" if tier else message
