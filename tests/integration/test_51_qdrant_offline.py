"""Qdrant on an offline machine: the role decides on the stand-in without a failing task.

tests/inventories/offline deploys only Qdrant (ports 39633/39634) with the official release
configured and qdrant_allow_standin set, into a state directory of this module's own. The
machines here have no internet: the first deploy asks the release server once (quietly),
records why it cannot download in targets.json, and later deploys reuse that answer.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from integration_helpers import INVENTORIES, Run, invoke

pytestmark = pytest.mark.integration

OFFLINE_INVENTORY = str(INVENTORIES / "offline")


def _deploy(state_dir: Path, *extra: str) -> Run:
    return invoke(
        "deploy",
        "--inventory",
        OFFLINE_INVENTORY,
        "--json",
        *extra,
        env={"MEMOPS_STATE_DIR": str(state_dir)},
    )


@pytest.fixture(scope="module")
def offline_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Run]]:
    state_dir = tmp_path_factory.mktemp("qdrant-offline-state")
    runs = [_deploy(state_dir), _deploy(state_dir), _deploy(state_dir, "--check")]
    for run in runs:
        assert run.returncode == 0, f"deploy failed: {run.stderr.strip()}\n{run.stdout[-3000:]}"
    return state_dir, runs


def _log(run: Run) -> str:
    return Path(run.json()["log_file"]).read_text(encoding="utf-8")


def test_no_deploy_has_a_failed_or_rescued_task(offline_runs: tuple[Path, list[Run]]) -> None:
    for run in offline_runs[1]:
        document = run.json()
        assert document["failures"] == []
        stats = document["hosts"]["localhost"]
        assert (stats["failures"], stats["rescued"], stats["ignored"]) == (0, 0, 0), stats
        log = _log(run)
        assert "fatal:" not in log
        assert "FAILED!" not in log
        assert "[ERROR]" not in log


def test_targets_record_the_standin_and_why(offline_runs: tuple[Path, list[Run]]) -> None:
    state_dir = offline_runs[0]
    targets = json.loads((state_dir / "targets.json").read_text(encoding="utf-8"))
    entry = targets["deployment"]["qdrant"]
    assert entry["standin"] is True
    assert entry["reason"].startswith("Qdrant ")
    assert "could not be downloaded from https://" in entry["reason"]
    marker = next((state_dir / "dist").glob("*.unreachable"))
    assert entry["reason"].endswith(f"delete {marker} to try again")
    assert marker.read_text(encoding="utf-8") == entry["reason"]


def test_later_deploys_do_not_ask_the_release_server_again(
    offline_runs: tuple[Path, list[Run]],
) -> None:
    first, second, check = offline_runs[1]
    assert "TASK [memops.stack.qdrant : Ask the release server" in _log(first)
    for run in (second, check):
        log = _log(run)
        # skipped tasks are not shown: the task either is absent or did not run
        for section in log.split("TASK [memops.stack.qdrant : Ask the release server")[1:]:
            assert "ok: [localhost]" not in section.split("TASK [", 1)[0]


def test_redeploy_and_check_change_nothing(offline_runs: tuple[Path, list[Run]]) -> None:
    _, second, check = offline_runs[1]
    assert second.json()["changed"] == 0, second.json()["changed_tasks"]
    assert check.json()["changed"] == 0, check.json()["changed_tasks"]


def test_the_offline_instance_schedules_nothing(offline_runs: tuple[Path, list[Run]]) -> None:
    """Its state directory is pytest's: a cron job left behind would run backups of a stack
    that is gone, every 15 minutes, for as long as the machine lives."""
    assert offline_runs[1]
    assert not list(Path("/etc/cron.d").glob("memops-backup-*offline*"))
