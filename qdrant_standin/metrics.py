"""``/metrics`` in Prometheus text format, with the metric names real Qdrant exposes.

REST metrics are keyed by method, route pattern (``/collections/{name}/points``)
and status, like Qdrant's. As in Qdrant, durations (avg/min/max and the
``rest_responses_duration_seconds`` histogram, labelled by method and endpoint)
are reported for responses with status 200 only.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
TIMED_STATUS = 200


@dataclass
class _Stats:
    count: int = 0
    total: float = 0.0
    minimum: float = float("inf")
    maximum: float = 0.0
    buckets: list[int] = field(default_factory=lambda: [0] * len(BUCKETS))

    def add(self, seconds: float) -> None:
        self.count += 1
        self.total += seconds
        self.minimum = min(self.minimum, seconds)
        self.maximum = max(self.maximum, seconds)
        for index, bound in enumerate(BUCKETS):
            if seconds <= bound:
                self.buckets[index] += 1


class RequestMetrics:
    """Counters and timings of REST responses since the server started."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stats: dict[tuple[str, str, int], _Stats] = {}

    def observe(self, method: str, endpoint: str, status: int, seconds: float) -> None:
        with self._lock:
            self._stats.setdefault((method, endpoint, status), _Stats()).add(seconds)

    def render(self, name: str, version: str, collections: int, vectors: int) -> str:
        lines: list[str] = []
        _family(lines, "app_info", "gauge", "information about qdrant server")
        lines.append(f"app_info{_labels(name=name, version=version)} 1")
        _family(lines, "app_status_recovery_mode", "gauge", "features enabled in qdrant server")
        lines.append("app_status_recovery_mode 0")
        _family(lines, "collections_total", "gauge", "number of collections")
        lines.append(f"collections_total {collections}")
        _family(lines, "collections_vector_total", "gauge", "total number of vectors")
        lines.append(f"collections_vector_total {vectors}")
        _family(lines, "cluster_enabled", "gauge", "is cluster support enabled")
        lines.append("cluster_enabled 0")
        with self._lock:
            stats = sorted(self._stats.items())
            self._render_rest(lines, stats)
        return "\n".join(lines) + "\n"

    @staticmethod
    def _render_rest(lines: list[str], stats: list[tuple[tuple[str, str, int], _Stats]]) -> None:
        if not stats:
            return
        keyed = [(_labels(method=m, endpoint=e, status=str(s)), s, st) for (m, e, s), st in stats]
        timed = [(labels, st) for labels, status, st in keyed if status == TIMED_STATUS]
        histograms = [
            (_labels(method=m, endpoint=e), st) for (m, e, s), st in stats if s == TIMED_STATUS
        ]
        _family(lines, "rest_responses_total", "counter", "total number of responses")
        lines += [f"rest_responses_total{labels} {st.count}" for labels, _, st in keyed]
        _family(lines, "rest_responses_fail_total", "counter", "total number of failed responses")
        lines += [
            f"rest_responses_fail_total{labels} {st.count if status >= 400 else 0}"
            for labels, status, st in keyed
        ]
        if not timed:
            return
        for metric, help_text, value in (
            ("avg", "average response duration", lambda st: st.total / st.count),
            ("min", "minimum response duration", lambda st: st.minimum),
            ("max", "maximum response duration", lambda st: st.maximum),
        ):
            name = f"rest_responses_{metric}_duration_seconds"
            _family(lines, name, "gauge", help_text)
            lines += [f"{name}{labels} {_number(value(st))}" for labels, st in timed]
        name = "rest_responses_duration_seconds"
        _family(lines, name, "histogram", "response duration histogram")
        for labels, st in histograms:
            inner = labels[1:-1]
            for bound, count in zip(BUCKETS, st.buckets, strict=True):
                lines.append(f'{name}_bucket{{{inner},le="{_number(bound)}"}} {count}')
            lines.append(f'{name}_bucket{{{inner},le="+Inf"}} {st.count}')
            lines.append(f"{name}_sum{labels} {_number(st.total)}")
            lines.append(f"{name}_count{labels} {st.count}")


def _family(lines: list[str], name: str, kind: str, help_text: str) -> None:
    lines.append(f"# HELP {name} {help_text}")
    lines.append(f"# TYPE {name} {kind}")


def _labels(**labels: str) -> str:
    def escape(value: str) -> str:
        return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")

    return "{" + ",".join(f'{key}="{escape(value)}"' for key, value in labels.items()) + "}"


def _number(value: float) -> str:
    return repr(float(value))
