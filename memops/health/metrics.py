"""Publish a health snapshot as Prometheus metrics through node_exporter's textfile collector.

Alert rules (MemopsHealthFailing, MemopsQueueDepth…) read these. The file is
replaced atomically so node_exporter never scrapes half of it.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from memops.health.cycle import HealthSnapshot
from memops.probes.result import State
from memops.textfile import escape as _escape
from memops.textfile import publish

TEXTFILE_NAME = "memops_health.prom"


def format_metrics(snapshot: HealthSnapshot, inventory: str) -> str:
    stack = f'inventory="{_escape(inventory)}"'
    lines = [
        "# HELP memops_health_state 1 for the current whole-stack health state, else 0.",
        "# TYPE memops_health_state gauge",
    ]
    for state in State:
        value = 1 if snapshot.state is state else 0
        lines.append(f'memops_health_state{{{stack},state="{state}"}} {value}')
    lines += [
        "# HELP memops_health_failure_streak Consecutive health cycles with a failed probe.",
        "# TYPE memops_health_failure_streak gauge",
        f"memops_health_failure_streak{{{stack}}} {snapshot.failure_streak}",
        "# HELP memops_health_queue_depth Components whose last probe failed.",
        "# TYPE memops_health_queue_depth gauge",
        f"memops_health_queue_depth{{{stack}}} {snapshot.queue_depth}",
        "# HELP memops_health_last_cycle_failed 1 when the last health cycle had a failed probe.",
        "# TYPE memops_health_last_cycle_failed gauge",
        f"memops_health_last_cycle_failed{{{stack}}} {int(snapshot.last_cycle_failed)}",
        "# HELP memops_health_component_up 1 when the component's last probe succeeded.",
        "# TYPE memops_health_component_up gauge",
    ]
    for name, component in sorted(snapshot.components.items()):
        up = 0 if component.failure_streak > 0 else 1
        lines.append(f'memops_health_component_up{{{stack},component="{_escape(name)}"}} {up}')
    checked = datetime.fromisoformat(snapshot.checked_at.replace("Z", "+00:00")).timestamp()
    lines += [
        "# HELP memops_health_checked_timestamp_seconds When the last health cycle ran.",
        "# TYPE memops_health_checked_timestamp_seconds gauge",
        f"memops_health_checked_timestamp_seconds{{{stack}}} {checked:.3f}",
    ]
    return "\n".join(lines) + "\n"


def write_textfile(snapshot: HealthSnapshot, inventory: str, directory: Path) -> Path:
    """Replace ``directory``/memops_health.prom (mode 0644: node_exporter reads it)."""
    return publish(directory, TEXTFILE_NAME, format_metrics(snapshot, inventory).splitlines())
