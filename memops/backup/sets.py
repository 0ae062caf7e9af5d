"""Set-level procedures: take a set of every tier, restore one, prune a store.

Each procedure works on engines (``memops.backup.engines``) and a store; none
prints. A set exists only once its manifest is written, and ``create_set``
verifies what it wrote before it reports success. ``restore_set`` verifies the
set (every file's size and sha256, the tier checkers) into a private working
directory first: nothing live is touched unless verification passes.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from memops import faults
from memops.backup.artifacts import (
    BackupError,
    PartialRestore,
    RestoreRefused,
    SetNotFound,
    TierArtifact,
)
from memops.backup.crypto import BackupKey
from memops.backup.engines import TierEngine, tier_errors
from memops.backup.manifest import Manifest
from memops.backup.retention import Decision, Policy, plan_retention, set_infos
from memops.backup.set_ids import check_set_id, new_set_id
from memops.backup.store import BackupStore
from memops.backup.verify import (
    VerifyReport,
    check_key,
    discard_kept,
    untrusted_reason,
    verify_set,
)

Progress = Callable[[str], None]


def _quiet(_message: str) -> None:
    return None


@contextlib.contextmanager
def work_dir(base: Path | None, label: str) -> Iterator[Path]:
    """A private scratch directory (next to the state directory when given), always removed.

    Its name carries this process's pid. A SIGKILLed run cannot remove its own (which may
    hold decrypted backup files), so each new one first removes those in ``base`` whose
    process is gone.
    """
    if base is not None:
        base.mkdir(mode=0o700, parents=True, exist_ok=True)
        remove_orphaned_work_dirs(base)
    path = Path(tempfile.mkdtemp(prefix=f"memops-{label}-{os.getpid()}-", dir=base))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


_WORK_DIR = re.compile(r"memops-[a-z]+-(\d+)-")
_LEGACY_AGE_S = 24 * 3600  # work directories named before they carried a pid


def remove_orphaned_work_dirs(base: Path) -> list[str]:
    """Remove the work directories in ``base`` of processes that no longer run: their names."""
    removed = []
    for entry in base.glob("memops-*"):
        found = _WORK_DIR.match(entry.name)
        if found:
            orphaned = not Path(f"/proc/{found.group(1)}").exists()
        else:
            orphaned = time.time() - entry.lstat().st_mtime > _LEGACY_AGE_S
        if orphaned and entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry.name)
    return removed


def tool_versions() -> dict[str, str]:
    """Versions of the command-line tools a set depends on (those installed here)."""
    found: dict[str, str] = {}
    for tool, argv in {
        "zstd": ["zstd", "--version"],
        "pg_dump": ["pg_dump", "--version"],
        "redis-check-rdb": ["redis-server", "--version"],
    }.items():
        if shutil.which(argv[0]) is None:
            continue
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            run = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
            found[tool] = (run.stdout or run.stderr).strip().splitlines()[0][:120]
    return found


@dataclass(frozen=True)
class CreatedSet:
    manifest: Manifest
    verify: VerifyReport
    seconds: float
    tier_sizes: dict[str, int]
    housekeeping: dict[str, dict[str, Any]] = field(default_factory=dict)


def create_set(
    store: BackupStore,
    engines: Mapping[str, TierEngine],
    *,
    tenants: Sequence[str] = (),
    key: BackupKey | None = None,
    scratch_base: Path | None = None,
    progress: Progress = _quiet,
) -> CreatedSet:
    """Back up every tier of ``engines`` into one new set; verify it; return it.

    A failure part way leaves no manifest (the set does not exist); the partial
    files are removed here, or by the next prune when even that fails.
    """
    started = time.monotonic()
    store.check()
    set_id = new_set_id()
    writer = store.begin_set(set_id, key=key)
    try:
        with work_dir(scratch_base, "backup") as work:
            for tier, engine in engines.items():
                progress(f"{tier}: backing up")
                stage = work / tier
                stage.mkdir(mode=0o700)
                with tier_errors(tier):
                    artifact = engine.backup(stage, tenants=list(tenants) or None)
                progress(f"{tier}: storing {len(artifact.files)} file(s) in {store.description}")
                writer.add_tier(artifact, stage)
                shutil.rmtree(stage, ignore_errors=True)
        manifest = writer.finish(namespaces=tuple(tenants), tool_versions=tool_versions())
    except BaseException:
        if not writer.finished:
            with contextlib.suppress(Exception):
                store.delete_set(set_id)
        raise
    progress(f"verifying set {set_id}")
    report = verify_set(store, set_id, key=key)
    sizes = {tier: sum(r.size for r in manifest.files_of(tier)) for tier in manifest.tiers}
    housekeeping: dict[str, dict[str, Any]] = {}
    if report.ok:  # what earlier restores kept "until the next verified backup" can go now
        for tier, engine in engines.items():
            with tier_errors(tier):
                done = engine.after_verified_set(manifest.artifacts[tier])
            if done:
                housekeeping[tier] = done
    return CreatedSet(manifest, report, time.monotonic() - started, sizes, housekeeping)


@dataclass(frozen=True)
class RestorePlan:
    manifest: Manifest
    tiers: tuple[str, ...]
    tenants: tuple[str, ...]

    def describe(self) -> list[str]:
        lines = []
        for tier in self.tiers:
            artifact = self.manifest.artifacts[tier]
            chosen = self.tenants or tuple(artifact.tenants)
            count = sum(artifact.tenants[t].count for t in chosen if t in artifact.tenants)
            scope = f"{len(self.tenants)} namespace(s)" if self.tenants else "whole tier"
            lines.append(f"{tier}: {scope}, {count} item(s) from set {self.manifest.set_id}")
        return lines


def plan_restore(
    store: BackupStore, set_id: str, tiers: Sequence[str], tenants: Sequence[str]
) -> RestorePlan:
    """Check a restore request against the set's manifest; RestoreRefused when it cannot be."""
    manifest = store.read_manifest(check_set_id(set_id))
    check_key(manifest, store.key, to_decrypt=True)  # before its (sealed) names are read
    chosen = tuple(tiers) or manifest.tiers
    missing = [tier for tier in chosen if tier not in manifest.tiers]
    if missing:
        raise RestoreRefused(
            f"set {set_id} has no {', '.join(missing)} tier (it holds {', '.join(manifest.tiers)})"
        )
    if not tenants and manifest.namespaces:
        raise RestoreRefused(
            f"set {set_id} holds only namespaces {', '.join(map(repr, manifest.namespaces))}: "
            "name them with --namespace"
        )
    for tenant in tenants:  # a name the set does not hold is a typo, not an empty restore
        if not any(_may_hold(manifest.artifacts[tier], tenant) for tier in chosen):
            raise RestoreRefused(
                f"set {set_id}: namespace {tenant!r} is not in its {', '.join(chosen)} tier(s)"
            )
    return RestorePlan(manifest, chosen, tuple(tenants))


def _may_hold(artifact: TierArtifact, tenant: str) -> bool:
    """Whether a tier's artifact has the tenant (a whole-tier file counts no tenants apart)."""
    return tenant in artifact.tenants or set(artifact.tenants) == {""}


@dataclass(frozen=True)
class RestoreResult:
    plan: RestorePlan
    reports: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


def restore_set(
    store: BackupStore,
    plan: RestorePlan,
    engines: Mapping[str, TierEngine],
    *,
    key: BackupKey | None = None,
    scratch_base: Path | None = None,
    progress: Progress = _quiet,
    tier_options: Mapping[str, Mapping[str, Any]] | None = None,
    before_change: Callable[[], None] | None = None,
    allow_unencrypted: bool = False,
) -> RestoreResult:
    """Verify the planned set's files into a private directory, then restore each tier.

    ``tier_options`` are keyword arguments for one tier's restore only (e.g. PostgreSQL's
    ``drop_old``), for tiers that have them. ``before_change`` runs once the set has
    verified, before the first tier is touched (a caller's own first destructive step).
    """
    started = time.monotonic()
    set_id = plan.manifest.set_id
    with work_dir(scratch_base, "restore") as work:
        kept = work / "set"
        kept.mkdir(mode=0o700)
        progress(f"verifying set {set_id}")
        report = verify_set(
            store,
            set_id,
            key=key,
            keep_dir=kept,
            tiers=plan.tiers,
            allow_unencrypted=allow_unencrypted,
        )
        if not report.ok:
            raise RestoreRefused(f"{report.problem}: nothing was restored")
        if before_change is not None:
            before_change()
        reports: dict[str, Any] = {}
        for number, tier in enumerate(plan.tiers):
            progress(f"{tier}: restoring")
            try:
                with tier_errors(tier):
                    reports[tier] = engines[tier].restore(
                        kept / tier,
                        plan.manifest.artifacts[tier],
                        tenants=list(plan.tenants) or None,
                        **(tier_options or {}).get(tier, {}),
                    )
            except BackupError as exc:
                untouched = number == 0 and isinstance(exc, RestoreRefused)
                if untouched or len(plan.tiers) == 1:
                    raise
                raise _partial(plan, number, reports, str(exc)) from None
            faults.point("restore.tier")
        discard_kept(kept)
    return RestoreResult(plan, reports, time.monotonic() - started)


def _partial(
    plan: RestorePlan, failed_at: int, reports: dict[str, Any], cause: str
) -> PartialRestore:
    """What a multi-tier restore that failed in tier number ``failed_at`` has done."""
    failed = plan.tiers[failed_at]
    return PartialRestore(
        cause,
        restored=list(plan.tiers[:failed_at]),
        failed=failed,
        not_restored=list(plan.tiers[failed_at + 1 :]),
        reports=dict(reports),
    )


def plan_prune(
    store: BackupStore,
    policy: Policy,
    *,
    key: BackupKey | None = None,
    now: datetime | None = None,
) -> list[Decision]:
    """What prune keeps and removes; the newest whole set of each tier that verifies is kept."""
    listing = store.list_sets()
    verified = _newest_verified_whole(store, listing.sets, key)
    return plan_retention(set_infos(listing, verified), policy, now=now or datetime.now(UTC))


def _newest_verified_whole(
    store: BackupStore, sets: Sequence[Manifest], key: BackupKey | None
) -> list[str]:
    """Verify whole sets, newest first, until each tier they hold has one that verifies."""
    whole = [manifest for manifest in sets if manifest.whole]
    wanted = {tier for manifest in whole for tier in manifest.tiers}
    verified: list[str] = []
    for manifest in sorted(whole, key=lambda m: m.started_at, reverse=True):
        if not wanted:
            break
        if wanted.isdisjoint(manifest.tiers):
            continue
        if verify_set(store, manifest.set_id, key=key).ok:
            verified.append(manifest.set_id)
            wanted.difference_update(manifest.tiers)
    return verified


def prune(store: BackupStore, decisions: Sequence[Decision]) -> list[str]:
    removed = []
    for decision in decisions:
        if not decision.keep:
            store.delete_set(decision.set_id)
            removed.append(decision.set_id)
    return removed


SET_ALIASES = ("latest", "oldest")


def resolve_set_id(store: BackupStore, set_id: str, key: BackupKey | None = None) -> str:
    """``set_id`` itself, or for ``latest`` / ``oldest`` (as barman names them) the id of the
    newest / oldest complete set the key trusts (any set, without a key)."""
    if set_id not in SET_ALIASES:
        return set_id
    listing = store.list_sets()
    if any(m.set_id == set_id for m in listing.sets):
        return set_id  # a set made with that very id
    trusted = [m for m in listing.sets if not untrusted_reason(m, key)]
    if not trusted:
        raise SetNotFound(f"no backup set in {store.description} for {set_id!r}")
    return (trusted[-1] if set_id == "latest" else trusted[0]).set_id


def newest_whole_set(store: BackupStore, key: BackupKey | None = None) -> Manifest:
    """The newest set taken without --namespace (what the drill checks unless told).

    With ``key``, among the sets it authenticates only: a set's times are its writer's
    word, so one anybody could have written must not pass for the newest.
    """
    listing = store.list_sets()
    whole = [
        manifest
        for manifest in listing.sets
        if manifest.whole and not untrusted_reason(manifest, key)
    ]
    if not whole:
        untrusted = sum(1 for m in listing.sets if m.whole and untrusted_reason(m, key))
        held = f" (only {len(listing.sets)} namespace set(s))" if listing.sets else ""
        if untrusted:
            held = f" that backup key {key.key_id if key else ''} authenticates ({untrusted} not)"
        raise SetNotFound(
            f"no whole backup set in {store.description}{held}: "
            "run `invoke backup.create` without --namespace"
        )
    return whole[-1]
