"""Which backup sets to keep: N daily and M weekly, never the newest verified set.

Pure policy, no I/O. Days and ISO weeks are UTC. Like restic's ``--keep-daily``,
"the last N days" are the last N days *that have a set*: when backups stop for
a month, the old sets are not all pruned at the next run. Incomplete sets (no
manifest that parses) are always pruned; callers hold the stack lock, so no
backup is still writing one.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from memops.backup.store import SetListing


@dataclass(frozen=True)
class Policy:
    daily: int = 30
    weekly: int = 12

    def __post_init__(self) -> None:
        if self.daily < 0 or self.weekly < 0:
            raise ValueError(f"retention counts must not be negative: {self}")


@dataclass(frozen=True)
class SetInfo:
    set_id: str
    taken_at: datetime | None  # the set's start; None for an incomplete set of unknown age
    complete: bool = True
    verified: bool = False
    problem: str = ""  # why an incomplete set is not complete ("no manifest", ...)


@dataclass(frozen=True)
class Decision:
    set_id: str
    keep: bool
    reason: str  # "daily 2026-12-01", "weekly 2026-W48", "newest verified", "outside policy"

    def to_dict(self) -> dict[str, object]:
        return {"set_id": self.set_id, "keep": self.keep, "reason": self.reason}


def _week(moment: datetime) -> str:
    year, week, _ = moment.isocalendar()
    return f"{year}-W{week:02d}"


def plan_retention(sets: Iterable[SetInfo], policy: Policy | None = None) -> list[Decision]:
    """One decision per set, newest first, each with its reason."""
    policy = policy or Policy()
    items = list(sets)
    complete = sorted(
        (s for s in items if s.complete and s.taken_at is not None),
        key=lambda s: (s.taken_at, s.set_id),
        reverse=True,
    )
    reasons: dict[str, list[str]] = {s.set_id: [] for s in complete}
    for count, period, label in (
        (policy.daily, lambda m: m.astimezone(UTC).date().isoformat(), "daily"),
        (policy.weekly, lambda m: _week(m.astimezone(UTC)), "weekly"),
    ):
        seen: set[str] = set()
        for info in complete:
            bucket = period(info.taken_at)
            if bucket in seen:
                continue
            if len(seen) == count:
                break
            seen.add(bucket)
            reasons[info.set_id].append(f"{label} {bucket}")
    newest_verified = next((s for s in complete if s.verified), None)
    if newest_verified is not None:
        reasons[newest_verified.set_id].append("newest verified")
    decisions = [
        Decision(
            s.set_id, bool(reasons[s.set_id]), ", ".join(reasons[s.set_id]) or "outside policy"
        )
        for s in complete
    ]
    decisions += [
        Decision(s.set_id, False, f"incomplete: {s.problem or 'no manifest'}")
        for s in sorted(items, key=lambda s: s.set_id, reverse=True)
        if not s.complete or s.taken_at is None
    ]
    return decisions


def set_infos(listing: SetListing, verified: Collection[str] = ()) -> list[SetInfo]:
    """What a store's listing says about each set; ``verified`` names the verified set ids."""
    infos = [
        SetInfo(m.set_id, m.started_at, complete=True, verified=m.set_id in verified)
        for m in listing.sets
    ]
    infos += [
        SetInfo(i.set_id, i.started_at, complete=False, problem=i.reason)
        for i in listing.incomplete
    ]
    return infos
