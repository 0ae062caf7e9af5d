"""Backup and drill results as metrics, under the names the memops alerts and dashboards read.

A failed run must not erase when the last one succeeded, so the last success of
each tier is remembered in the state directory (``backup-metrics.json``) and
written again with every run.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from memops.files import write_private_atomic
from memops.textfile import gauge, publish

BACKUP_TEXTFILE = "memops_backup.prom"
DRILL_TEXTFILE = "memops_restore_drill.prom"
MEMORY_FILE = "backup-metrics.json"


def _remembered(state_dir: Path) -> dict[str, Any]:
    try:
        data = json.loads((state_dir / MEMORY_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def record_backup(
    state_dir: Path,
    textfile_dir: Path | None,
    *,
    tiers: Mapping[str, bool],
    sizes: Mapping[str, int],
    finished_at: float | None = None,
) -> dict[str, Any]:
    """Record one backup run (success per tier, set size per tier); publish when deployed."""
    now = time.time() if finished_at is None else finished_at
    memory = _remembered(state_dir)
    backup = memory.setdefault("backup", {})
    for tier, ok in tiers.items():
        entry = backup.setdefault(tier, {})
        entry["last_run_success"] = 1 if ok else 0
        if ok:
            entry["last_success_timestamp_seconds"] = now
            entry["size_bytes"] = int(sizes.get(tier, 0))
    write_private_atomic(state_dir / MEMORY_FILE, json.dumps(memory, indent=2, sort_keys=True))
    if textfile_dir is not None:
        publish(textfile_dir, BACKUP_TEXTFILE, backup_lines(backup))
    return backup


def backup_lines(backup: Mapping[str, Mapping[str, float]]) -> list[str]:
    def per_tier(key: str) -> list[tuple[dict[str, str], float]]:
        return [
            ({"tier": tier}, entry[key]) for tier, entry in sorted(backup.items()) if key in entry
        ]

    return [
        *gauge(
            "memops_backup_last_run_success",
            "1 when the last backup run of a tier succeeded, else 0.",
            per_tier("last_run_success"),
        ),
        *gauge(
            "memops_backup_last_success_timestamp_seconds",
            "Unix time of the newest successful, verified backup set of a tier.",
            per_tier("last_success_timestamp_seconds"),
        ),
        *gauge(
            "memops_backup_size_bytes",
            "Size in bytes of the newest backup set of a tier.",
            per_tier("size_bytes"),
        ),
    ]


def record_drill(
    textfile_dir: Path | None,
    *,
    ok: bool,
    duration_s: float,
    rto_s: float | None,
    rpo_s: float | None,
    finished_at: float | None = None,
) -> list[str]:
    """Publish one drill: its verdict, when it ran, how long it took, the RTO and RPO measured."""
    now = time.time() if finished_at is None else finished_at
    lines = [
        *gauge(
            "memops_restore_drill_last_success",
            "1 when the last backup restore drill succeeded, else 0.",
            [({}, 1 if ok else 0)],
        ),
        *gauge(
            "memops_restore_drill_last_run_timestamp_seconds",
            "Unix time the last backup restore drill finished, successful or not.",
            [({}, now)],
        ),
        *gauge(
            "memops_restore_drill_duration_seconds",
            "How long the last backup restore drill took.",
            [({}, duration_s)],
        ),
    ]
    if rto_s is not None:
        lines += gauge(
            "memops_restore_drill_rto_seconds",
            "Restore time measured by the last drill (recovery time objective).",
            [({}, rto_s)],
        )
    if rpo_s is not None:
        lines += gauge(
            "memops_restore_drill_rpo_seconds",
            "Age of the set the last drill restored when it started (recovery point).",
            [({}, rpo_s)],
        )
    if textfile_dir is not None:
        publish(textfile_dir, DRILL_TEXTFILE, lines)
    return lines
