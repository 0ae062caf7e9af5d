"""The episodic and semantic tiers agree: every point has its row, every indexed row its point.

A Qdrant point stands for a live, indexed ``memory_items`` row of the same id and
tenant; an indexed live row (embedding kept, indexed_at set, not deleted) must
have its point. The drill checks this on the restored copies, so a set whose
tiers were taken apart (or restored apart) is caught before it is needed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import psycopg

_INDEXED_ROWS = """
SELECT id::text, tenant_id FROM memory_items
WHERE indexed_at IS NOT NULL AND deleted_at IS NULL AND embedding IS NOT NULL
"""
SHOWN = 5  # offending ids listed per kind of mismatch


@dataclass(frozen=True)
class CrossTierReport:
    rows: int
    points: int
    points_without_row: tuple[str, ...]
    rows_without_point: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.points_without_row and not self.rows_without_point

    def summary(self) -> str:
        if self.ok:
            return f"{self.points} points match {self.rows} indexed rows"
        parts = []
        if self.points_without_row:
            shown = ", ".join(self.points_without_row[:SHOWN])
            parts.append(f"{len(self.points_without_row)} point(s) without their row ({shown})")
        if self.rows_without_point:
            shown = ", ".join(self.rows_without_point[:SHOWN])
            parts.append(f"{len(self.rows_without_point)} indexed row(s) without a point ({shown})")
        return "; ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "rows": self.rows,
            "points": self.points,
            "points_without_row": list(self.points_without_row[:SHOWN]),
            "points_without_row_count": len(self.points_without_row),
            "rows_without_point": list(self.rows_without_point[:SHOWN]),
            "rows_without_point_count": len(self.rows_without_point),
        }


def check_cross_tier(
    conn: psycopg.Connection[Any], points: Iterable[tuple[str, str]]
) -> CrossTierReport:
    """Compare (id, tenant) of the points with the indexed live rows."""
    rows = {(str(i), str(t)) for i, t in conn.execute(_INDEXED_ROWS).fetchall()}
    seen = {(str(i), str(t)) for i, t in points}
    return CrossTierReport(
        rows=len(rows),
        points=len(seen),
        points_without_row=tuple(sorted(i for i, _ in seen - rows)),
        rows_without_point=tuple(sorted(i for i, _ in rows - seen)),
    )
