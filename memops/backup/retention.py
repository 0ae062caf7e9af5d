"""Which backup sets to keep: daily and weekly whole sets, recent namespace sets, and
always the newest verified whole set.

Pure policy, no I/O. Days and ISO weeks are UTC.

A set is *whole* when it was taken without ``--namespace``: its manifest names no
namespaces and each tier it holds is a full copy of that tier (``Manifest.whole``).
Whole sets are judged among themselves, tier by tier: for each tier, the whole sets
holding it keep one set per day for ``daily`` days and one per ISO week for ``weekly``
weeks, and the newest one that verifies is kept. A set of some tiers only
(``--tier redis``) is whole for the tiers it holds, so it takes those tiers' place in
its day but cannot displace the day's whole-stack set from the other tiers; when a set
is kept for only some of its tiers, its reason names them ("daily 2026-12-01 (redis)").
Like restic's ``--keep-daily``, "the last N days" are the last N days *that have a
set*: when backups stop for a month, the old sets are not all pruned at the next run.

A *namespace* set (``--namespace``, as the safety backups of ``rebuild.soft`` and
``rebuild.hard``) is judged apart, by age alone: kept while it is at most
``namespace_days`` days older than ``now``, pruned after. It never takes a whole
set's daily or weekly place and is never the "newest verified" set.

Incomplete sets (no manifest that parses) are always pruned; callers hold the stack
lock, so no backup is still writing one.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from memops.backup.artifacts import TIERS

if TYPE_CHECKING:
    from memops.backup.store import SetListing

# A rule picks, among whole sets of one tier (newest first), set id -> reason to keep it.
Rule = Callable[[Sequence["SetInfo"]], dict[str, str]]


@dataclass(frozen=True)
class Policy:
    daily: int = 30
    weekly: int = 12
    namespace_days: int = 7

    def __post_init__(self) -> None:
        if min(self.daily, self.weekly, self.namespace_days) < 0:
            raise ValueError(f"retention counts must not be negative: {self}")


@dataclass(frozen=True)
class SetInfo:
    set_id: str
    taken_at: datetime | None  # the set's start; None for an incomplete set of unknown age
    complete: bool = True
    verified: bool = False
    problem: str = ""  # why an incomplete set is not complete ("no manifest", ...)
    whole: bool = True  # False: taken with --namespace
    tiers: tuple[str, ...] = TIERS


@dataclass(frozen=True)
class Decision:
    set_id: str
    keep: bool
    reason: str  # "daily 2026-12-01", "weekly 2026-W48", "newest verified", "outside policy"

    def to_dict(self) -> dict[str, object]:
        return {"set_id": self.set_id, "keep": self.keep, "reason": self.reason}


def _day(moment: datetime) -> str:
    return moment.astimezone(UTC).date().isoformat()


def _week(moment: datetime) -> str:
    year, week, _ = moment.astimezone(UTC).isocalendar()
    return f"{year}-W{week:02d}"


def _taken(info: SetInfo) -> datetime:
    """When a set was taken: the rules judge only sets of known age (``decide`` sorts out
    the others first)."""
    if info.taken_at is None:
        raise ValueError(f"set {info.set_id}: no start time to judge it by")
    return info.taken_at


def _newest_per_period(count: int, period: Callable[[datetime], str], label: str) -> Rule:
    """The newest set of each of the ``count`` newest periods that have a set."""

    def rule(sets: Sequence[SetInfo]) -> dict[str, str]:
        chosen: dict[str, str] = {}
        seen: set[str] = set()
        for info in sets:
            bucket = period(_taken(info))
            if bucket in seen:
                continue
            if len(seen) == count:
                break
            seen.add(bucket)
            chosen[info.set_id] = f"{label} {bucket}"
        return chosen

    return rule


def _newest_verified(sets: Sequence[SetInfo]) -> dict[str, str]:
    found = next((s for s in sets if s.verified), None)
    return {found.set_id: "newest verified"} if found else {}


def _whole_reasons(whole: Sequence[SetInfo], policy: Policy) -> dict[str, list[str]]:
    """Why each whole set (newest first) is kept, the rules applied tier by tier."""
    rules = (
        _newest_per_period(policy.daily, _day, "daily"),
        _newest_per_period(policy.weekly, _week, "weekly"),
        _newest_verified,
    )
    reasons: dict[str, list[str]] = {s.set_id: [] for s in whole}
    held = {s.set_id: s.tiers for s in whole}
    for rule in rules:
        kept_for: dict[str, dict[str, list[str]]] = {}  # set id -> reason -> tiers
        for tier in TIERS:
            for set_id, reason in rule([s for s in whole if tier in s.tiers]).items():
                kept_for.setdefault(set_id, {}).setdefault(reason, []).append(tier)
        for set_id, found in kept_for.items():
            for reason, tiers in found.items():
                partial = set(tiers) != set(held[set_id])
                reasons[set_id].append(f"{reason} ({', '.join(tiers)})" if partial else reason)
    return reasons


def _whole_decision(set_id: str, reasons: list[str]) -> Decision:
    return Decision(set_id, bool(reasons), ", ".join(reasons) or "outside policy")


def _days(count: int) -> str:
    return f"{count} day" if count == 1 else f"{count} days"


def _namespace_decision(info: SetInfo, policy: Policy, now: datetime) -> Decision:
    """A namespace set is kept by age alone, never by the daily/weekly policy."""
    days = _days(policy.namespace_days)
    if _taken(info) >= now - timedelta(days=policy.namespace_days):
        return Decision(info.set_id, True, f"namespace set within {days}")
    return Decision(info.set_id, False, f"namespace set older than {days}")


def plan_retention(
    sets: Iterable[SetInfo], policy: Policy | None = None, *, now: datetime
) -> list[Decision]:
    """One decision per set, newest first, each with its reason.

    ``now`` (timezone-aware) is what namespace sets' ages are counted from.
    """
    policy = policy or Policy()
    items = list(sets)
    complete = sorted(
        (s for s in items if s.complete and s.taken_at is not None),
        key=lambda s: (s.taken_at, s.set_id),
        reverse=True,
    )
    reasons = _whole_reasons([s for s in complete if s.whole], policy)
    decisions = [
        _whole_decision(s.set_id, reasons[s.set_id])
        if s.whole
        else _namespace_decision(s, policy, now)
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
        SetInfo(
            m.set_id,
            m.started_at,
            complete=True,
            verified=m.set_id in verified,
            whole=m.whole,
            tiers=m.tiers,
        )
        for m in listing.sets
    ]
    infos += [
        SetInfo(i.set_id, i.started_at, complete=False, problem=i.reason)
        for i in listing.incomplete
    ]
    return infos
