"""Prometheus text exposition for node_exporter's textfile collector.

Batch jobs (health cycles, backups, drills) publish their results as gauges in
``<textfile_dir>/<name>.prom``; the file is replaced atomically, so node_exporter
never scrapes half of it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from memops.files import PUBLIC, write_atomic

Sample = tuple[Mapping[str, str], float]  # (labels, value)


def escape(value: str) -> str:
    """A label value as the exposition format writes it."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def gauge(name: str, help_text: str, samples: Sequence[Sample]) -> list[str]:
    return _family("gauge", name, help_text, samples)


def counter(name: str, help_text: str, samples: Sequence[Sample]) -> list[str]:
    """A counter (``name`` ends in ``_total``): its value only grows, kept by the writer."""
    return _family("counter", name, help_text, samples)


def _family(kind: str, name: str, help_text: str, samples: Sequence[Sample]) -> list[str]:
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
    for labels, value in samples:
        shown = ",".join(f'{key}="{escape(text)}"' for key, text in labels.items())
        number = (
            f"{value:.3f}"
            if isinstance(value, float) and not value.is_integer()
            else (f"{int(value)}" if float(value).is_integer() else f"{value}")
        )
        lines.append(f"{name}{{{shown}}} {number}" if shown else f"{name} {number}")
    return lines


def publish(directory: Path, filename: str, lines: Sequence[str]) -> Path:
    """Replace ``directory/filename`` (mode 0644: node_exporter reads it)."""
    path = directory / filename
    write_atomic(path, "\n".join(lines) + "\n", mode=PUBLIC, fsync=False)
    return path
