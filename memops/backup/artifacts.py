"""What a tier engine hands to a backup set, and how tenant names become file names.

A tier backup writes its files into a local staging directory and returns a
``TierArtifact``: the files (names relative to the staging directory), counts
and content checksums per tenant, server and tool versions, and the source
positions the set was taken at. The set writer turns artifacts into one
manifest; the tier's restore takes the same artifact (read back from the
manifest) and the verified files.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, field
from typing import Any

from memops.errors import Failed, Refused

TIERS = ("redis", "postgresql", "qdrant")


def tenant_token(tenant: str) -> str:
    """A file-name-safe, stable stand-in for a tenant name (names are data, never paths)."""
    return "t-" + hashlib.sha256(tenant.encode("utf-8")).hexdigest()[:24]


@dataclass(frozen=True)
class TenantSummary:
    """One tenant's share of a tier: how many items, and a checksum of their content.

    ``checksum`` is order-independent over the tenant's items in that tier (for
    example a sha256 over the sorted per-item digests), so a restore can be
    compared with the set without comparing files.
    """

    count: int
    checksum: str
    details: dict[str, Any] = field(default_factory=dict)  # e.g. {"expired_skipped": 3}


@dataclass(frozen=True)
class TierArtifact:
    tier: str  # one of TIERS
    files: tuple[str, ...]  # relative to the staging directory, written completely
    tenants: dict[str, TenantSummary]  # tenant name -> summary ("" for whole-tier data)
    versions: dict[str, str]  # e.g. {"redis": "7.0.15", "rdb_format": "10"}
    positions: dict[str, Any]  # e.g. {"lastsave": 1767312000, "master_repl_offset": 1234}
    scope: str = "full"  # "full" (the whole tier) or "namespaces"
    extra: dict[str, Any] = field(default_factory=dict)
    # file name -> kind ("rdb", "pgdump", ...) for the verify checkers; a file not
    # named here gets the kind its suffix implies (memops.backup.manifest.file_kind)
    kinds: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "tier": self.tier,
            "scope": self.scope,
            "files": list(self.files),
            "tenants": {
                name: {"count": s.count, "checksum": s.checksum, "details": s.details}
                for name, s in sorted(self.tenants.items())
            },
            "versions": dict(self.versions),
            "positions": dict(self.positions),
            "extra": dict(self.extra),
            "kinds": dict(sorted(self.kinds.items())),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TierArtifact:
        return cls(
            tier=data["tier"],
            scope=data.get("scope", "full"),
            files=tuple(data["files"]),
            tenants={
                name: TenantSummary(t["count"], t["checksum"], dict(t.get("details", {})))
                for name, t in data["tenants"].items()
            },
            versions=dict(data["versions"]),
            positions=dict(data["positions"]),
            extra=dict(data.get("extra", {})),
            kinds=dict(data.get("kinds", {})),
        )


@dataclass
class ScratchCopy:
    """One tier restored somewhere private: what it holds, and handles for cross-checks."""

    summaries: dict[str, TenantSummary]
    seconds: float
    points: list[tuple[str, str]] | None = None  # qdrant: (id, tenant)
    connection: Any = None  # postgresql: a connection to the scratch database; redis: a client


def scratch_name(base: str) -> str:
    """A name for a scratch copy of ``base`` that no live object has."""
    return f"{base}__drill_{secrets.token_hex(3)}"


class BackupError(Failed):
    """A backup or restore step failed; the message is one line for the operator."""


class SetNotFound(Refused, BackupError):
    """The named set (or any set, for "the newest") is not in the store: bad input, exit 2."""


class RestoreRefused(Refused, BackupError):
    """A restore was refused before anything was touched (version, checksum, key...)."""


class PartialRestore(BackupError):
    """A restore of several tiers failed in one after others were restored.

    ``restored`` tiers hold the set's data now (their reports in ``reports``);
    ``failed`` may be part way; ``not_restored`` were not touched.
    """

    def __init__(
        self,
        cause: str,
        *,
        restored: list[str],
        failed: str,
        not_restored: list[str],
        reports: dict[str, Any],
    ) -> None:
        self.restored, self.failed, self.not_restored = restored, failed, not_restored
        self.reports = reports
        done = ", ".join(restored) or "none"
        untouched = ", ".join(not_restored) or "none"
        super().__init__(
            f"{cause}; restored: {done}; failed (may be part way): {failed}; "
            f"not restored: {untouched}"
        )

    def tier_states(self) -> dict[str, str]:
        """tier -> "restored" / "failed" / "not restored", in the plan's order."""
        states = dict.fromkeys(self.restored, "restored") | {self.failed: "failed"}
        return states | dict.fromkeys(self.not_restored, "not restored")
