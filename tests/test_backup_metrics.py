"""Backup and drill metrics: the names the alerts read, and a failure keeps the last success;
runs skipped for a held lock are counted per task until a run of the task gets it."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from memops.backup.metrics import (
    BACKUP_TEXTFILE,
    DRILL_TEXTFILE,
    SKIPPED_TEXTFILE,
    record_backup,
    record_drill,
    record_lock_taken,
    record_skipped,
)
from memops.paths import PROJECT_DIR
from memops.render.alerts import metric_names


def _samples(path: Path) -> dict[str, float]:
    found = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            found[name] = float(value)
    return found


def test_a_failed_run_keeps_the_last_success(tmp_path: Path) -> None:
    state, textfiles = tmp_path / "state", tmp_path / "textfile"
    state.mkdir()
    textfiles.mkdir()
    record_backup(
        state, textfiles, tiers={"redis": True, "postgresql": True}, sizes={"redis": 10},
        finished_at=1000.0,
    )  # fmt: skip
    record_backup(state, textfiles, tiers={"redis": False}, sizes={}, finished_at=2000.0)
    samples = _samples(textfiles / BACKUP_TEXTFILE)
    assert samples['memops_backup_last_run_success{tier="redis"}'] == 0
    assert samples['memops_backup_last_success_timestamp_seconds{tier="redis"}'] == 1000
    assert samples['memops_backup_last_run_success{tier="postgresql"}'] == 1
    assert samples['memops_backup_size_bytes{tier="redis"}'] == 10
    assert oct((textfiles / BACKUP_TEXTFILE).stat().st_mode & 0o777) == "0o644"
    assert oct((state / "backup-metrics.json").stat().st_mode & 0o777) == "0o600"


def test_drill_metrics_and_the_names_the_alerts_read(tmp_path: Path) -> None:
    record_drill(tmp_path, ok=True, duration_s=12.5, rto_s=9.25, rpo_s=300.0, finished_at=5.0)
    samples = _samples(tmp_path / DRILL_TEXTFILE)
    assert samples["memops_restore_drill_last_success"] == 1
    assert samples["memops_restore_drill_duration_seconds"] == 12.5
    assert samples["memops_restore_drill_rto_seconds"] == 9.25
    published = {re.sub(r"\{.*", "", name) for name in samples}
    published |= {re.sub(r"\{.*", "", n) for n in _samples(_backup_file(tmp_path / "b"))}
    record_skipped(tmp_path, tmp_path, task="backup.create")
    published |= {re.sub(r"\{.*", "", n) for n in _samples(tmp_path / SKIPPED_TEXTFILE)}
    wanted = set()  # what the committed alert rules read of the backup and drill metrics
    for rules in (PROJECT_DIR / "alerts").glob("*.rules.yml"):
        for group in yaml.safe_load(rules.read_text())["groups"]:
            for rule in group["rules"]:
                wanted |= {
                    n
                    for n in metric_names(rule["expr"])
                    if n.startswith(("memops_backup_", "memops_restore_drill_"))
                }
    assert len(wanted) >= 5
    assert "memops_backup_last_run_skipped" in wanted  # MemopsBackupSkipped
    assert wanted <= published


def _backup_file(directory: Path) -> Path:
    directory.mkdir()
    record_backup(directory, directory, tiers={"qdrant": True}, sizes={"qdrant": 1})
    return directory / BACKUP_TEXTFILE


def test_skipped_runs_are_counted_per_task_until_a_run_gets_the_lock(tmp_path: Path) -> None:
    state, textfiles = tmp_path / "state", tmp_path / "textfile"
    textfiles.mkdir()
    assert record_lock_taken(state, textfiles, task="backup.create") is False
    samples = _samples(textfiles / SKIPPED_TEXTFILE)  # its series exist from its first run
    assert samples['memops_backup_last_run_skipped{task="backup.create"}'] == 0
    assert samples['memops_backup_skipped_total{task="backup.create"}'] == 0
    record_skipped(state, textfiles, task="backup.create", at=100.0)
    record_skipped(state, textfiles, task="backup.create", at=200.0)
    record_skipped(state, textfiles, task="backup.drill", at=150.0)
    samples = _samples(textfiles / SKIPPED_TEXTFILE)
    assert samples['memops_backup_last_run_skipped{task="backup.create"}'] == 1
    assert samples['memops_backup_last_skipped_timestamp_seconds{task="backup.create"}'] == 200
    assert samples['memops_backup_skipped_total{task="backup.create"}'] == 2
    assert samples['memops_backup_skipped_total{task="backup.drill"}'] == 1
    assert (
        "# TYPE memops_backup_skipped_total counter" in (textfiles / SKIPPED_TEXTFILE).read_text()
    )

    assert record_lock_taken(state, textfiles, task="backup.create") is True
    assert record_lock_taken(state, textfiles, task="backup.create") is False  # already clear
    samples = _samples(textfiles / SKIPPED_TEXTFILE)
    assert samples['memops_backup_last_run_skipped{task="backup.create"}'] == 0
    assert samples['memops_backup_last_run_skipped{task="backup.drill"}'] == 1  # not its run
    assert samples['memops_backup_skipped_total{task="backup.create"}'] == 2  # a counter
    assert samples['memops_backup_last_skipped_timestamp_seconds{task="backup.create"}'] == 200
    assert oct((textfiles / SKIPPED_TEXTFILE).stat().st_mode & 0o777) == "0o644"
    assert oct((state / "backup-skipped.json").stat().st_mode & 0o777) == "0o600"
