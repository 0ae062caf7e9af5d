"""Backup and drill results as metrics, under the names the memops alerts and dashboards read.

A failed run must not erase when the last one succeeded, so the last success of
each tier is remembered in the state directory (``backup-metrics.json``) and
written again with every run.

A scheduled run that gave up waiting for the stack lock (another action held it
for longer than the run would wait) did nothing: it is counted per task in
``memops_backup_skipped.prom`` (``record_skipped``), remembered in
``backup-skipped.json``, and the next run of that task that gets the lock
clears ``memops_backup_last_run_skipped`` again (``record_lock_taken``). That
file is written by processes that do not hold the stack lock, so it has a lock
of its own.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from memops.files import write_private_atomic
from memops.textfile import counter, gauge, publish

BACKUP_TEXTFILE = "memops_backup.prom"
DRILL_TEXTFILE = "memops_restore_drill.prom"
SKIPPED_TEXTFILE = "memops_backup_skipped.prom"
MEMORY_FILE = "backup-metrics.json"
SKIPPED_MEMORY_FILE = "backup-skipped.json"


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


def _per(
    label: str, entries: Mapping[str, Mapping[str, float]], key: str
) -> list[tuple[dict[str, str], float]]:
    """One sample of ``key`` per entry that has it, labelled ``label="<entry name>"``."""
    return [({label: name}, entry[key]) for name, entry in sorted(entries.items()) if key in entry]


def backup_lines(backup: Mapping[str, Mapping[str, float]]) -> list[str]:
    def per_tier(key: str) -> list[tuple[dict[str, str], float]]:
        return _per("tier", backup, key)

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


def record_skipped(
    state_dir: Path, textfile_dir: Path | None, *, task: str, at: float | None = None
) -> dict[str, Any]:
    """A run of ``task`` gave up waiting for the stack lock: count it, publish when deployed."""
    now = time.time() if at is None else at

    def count(skipped: dict[str, Any]) -> bool:
        entry = skipped.setdefault(task, {})
        entry["last_run_skipped"] = 1
        entry["last_skipped_timestamp_seconds"] = now
        entry["skipped_total"] = int(entry.get("skipped_total", 0)) + 1
        return True

    return _update_skipped(state_dir, textfile_dir, count)


def record_lock_taken(state_dir: Path, textfile_dir: Path | None, *, task: str) -> bool:
    """A run of ``task`` got the stack lock: clear its last skip. True when there was one.

    A task seen for the first time gets its series at 0, so ``MemopsBackupSkipped``
    has something to evaluate before the first skip."""
    cleared = False

    def clear(skipped: dict[str, Any]) -> bool:
        nonlocal cleared
        if task not in skipped:
            skipped[task] = {"last_run_skipped": 0, "skipped_total": 0}
            return True
        entry = skipped[task]
        cleared = bool(entry.get("last_run_skipped"))
        if cleared:
            entry["last_run_skipped"] = 0
        return cleared

    _update_skipped(state_dir, textfile_dir, clear)
    return cleared


def skipped_lines(skipped: Mapping[str, Mapping[str, float]]) -> list[str]:
    def per_task(key: str) -> list[tuple[dict[str, str], float]]:
        return _per("task", skipped, key)

    return [
        *gauge(
            "memops_backup_last_run_skipped",
            "1 when the last scheduled run of a task gave up waiting for the stack lock "
            "(it did nothing), 0 once a run of that task got the lock.",
            per_task("last_run_skipped"),
        ),
        *gauge(
            "memops_backup_last_skipped_timestamp_seconds",
            "Unix time a run of a task last gave up waiting for the stack lock.",
            per_task("last_skipped_timestamp_seconds"),
        ),
        *counter(
            "memops_backup_skipped_total",
            "Runs of a task that gave up waiting for the stack lock.",
            per_task("skipped_total"),
        ),
    ]


def _update_skipped(
    state_dir: Path, textfile_dir: Path | None, change: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    """Read the remembered skips, ``change`` them, write and publish them when it says it
    changed something; all under their own lock (the skipping run holds no stack lock)."""
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(state_dir / f"{SKIPPED_MEMORY_FILE}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # held for a read and a write: never long
        path = state_dir / SKIPPED_MEMORY_FILE
        try:
            skipped = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            skipped = {}
        if not isinstance(skipped, dict):
            skipped = {}
        if change(skipped):
            write_private_atomic(path, json.dumps(skipped, indent=2, sort_keys=True))
            if textfile_dir is not None:
                publish(textfile_dir, SKIPPED_TEXTFILE, skipped_lines(skipped))
        return skipped
    finally:
        os.close(fd)
