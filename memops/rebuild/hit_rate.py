"""The rebuild runbook's success bar: a scripted read workload over one namespace.

Each read asks a tier for a memory the way the memory service does and counts a
hit when the answer is the memory, intact:

- short-term: GET of every namespace key, a hit when the value opens good;
- episodic: every live row of the tenant by id, a hit when its content is there
  and it validates;
- semantic: a nearest-neighbour query with each indexed live row's own embedding,
  filtered to the tenant; a hit when the first answer is that row's point and it
  validates.

The hit rate is hits over reads, in total and per tier. The entries validation
found bad are misses, so a namespace whose points are gone or whose values are
corrupt falls under the bar even when every read returns something.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from memops.memory.qdrant_points import collection_names, tenant_selector
from memops.memory.values import GOOD
from memops.rebuild.validate import NO_POINT, NamespaceReport, TierReport

if TYPE_CHECKING:
    from qdrant_client import QdrantClient

DEFAULT_MIN_HIT_RATE = 0.8
DEFAULT_SEMANTIC_QUERIES = 200


@dataclass
class HitRate:
    reads: dict[str, int] = field(default_factory=dict)
    hits: dict[str, int] = field(default_factory=dict)

    def count(self, tier: str, hit: bool) -> None:
        self.reads[tier] = self.reads.get(tier, 0) + 1
        self.hits[tier] = self.hits.get(tier, 0) + int(hit)

    @property
    def rate(self) -> float:
        total = sum(self.reads.values())
        return sum(self.hits.values()) / total if total else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "reads": sum(self.reads.values()),
            "hits": sum(self.hits.values()),
            "hit_rate": round(self.rate, 4),
            "tiers": {
                t: {"reads": n, "hits": self.hits[t], "hit_rate": round(self.hits[t] / n, 4)}
                for t, n in self.reads.items()
            },
        }


def measure(
    report: NamespaceReport,
    *,
    qdrant: QdrantClient | None,
    max_queries: int = DEFAULT_SEMANTIC_QUERIES,
) -> HitRate:
    """Hits of the reads over a validated namespace.

    Short-term and episodic reads are the entries validation opened; semantic
    reads query with the embeddings of the indexed live rows (so they need the
    episodic tier checked too), the first ``max_queries`` of them by id.
    """
    found = HitRate()
    for tier in ("redis", "postgresql"):
        if tier in report.tiers:
            _count_entries(found, report.tiers[tier])
    if qdrant is not None and "qdrant" in report.tiers and "postgresql" in report.tiers:
        bad = {o.id for o in report.tiers["qdrant"].offenders}
        names = collection_names(qdrant)
        for row_id in sorted(report.indexed)[:max_queries]:
            first = _nearest(qdrant, names, report.tenant, report.indexed[row_id].embedding)
            found.count("qdrant", first == row_id and row_id not in bad)
    return found


def _count_entries(found: HitRate, tier: TierReport) -> None:
    """A read hits a good entry; a row whose point is missing still reads fine here."""
    readable = sum(o.reason == NO_POINT for o in tier.offenders)
    found.reads[tier.tier] = tier.checked
    found.hits[tier.tier] = tier.counts[GOOD] + readable


def _nearest(client: QdrantClient, collections: list[str], tenant: str, vector: Any) -> str:
    """The id of the best match over the collections (an empty string when none)."""
    selector = tenant_selector(tenant)
    best: tuple[float, str] | None = None
    for name in collections:
        answer = client.query_points(
            name, query=list(vector), query_filter=selector, limit=1, with_payload=False
        ).points
        if answer and (best is None or answer[0].score > best[0]):
            best = (answer[0].score, str(answer[0].id))
    return best[1] if best else ""
