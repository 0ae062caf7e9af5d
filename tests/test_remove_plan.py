"""`invoke remove` without a live stack: the plan it prints from the roles' reports, and the
refusal that touches nothing (the stack itself: tests/integration/test_70_remove.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from memops.deploy.playbook import PlaybookResult
from memops.ops.remove import REPORT, Plan
from memops.paths import PROJECT_DIR

INVOKE = str(Path(sys.executable).with_name("invoke"))


def _result(report: list[dict[str, object]]) -> PlaybookResult:
    return PlaybookResult(0, {}, [], [], Path("/dev/null"), 1.0, custom={"_run": {REPORT: report}})


def test_the_plan_names_every_service_path_database_and_set() -> None:
    report = [
        {
            "host": "db1",
            "component": "postgresql",
            "stopped": ["postgresql@15-memops"],
            "removed": [],
            "purged": ["/etc/postgresql/15/memops", "/var/lib/postgresql/15/memops"],
            "kept": [],
            "databases": ["memops"],
        },
        {"host": "db1", "component": "backup_schedule", "stopped": [], "removed": [], "kept": []},
    ]

    class Store:
        description = "local /backups"

    plan = Plan.of(_result(report), Store(), ["20250301T031500Z-8f3a"])  # type: ignore[arg-type]
    assert plan.summary() == "1 service(s) stopped, 0 path(s) removed, 4 deleted"
    assert [line.split()[0] for line in plan.lines()] == [
        "stop",
        "delete",
        "delete",
        "delete",
        "delete",
    ]
    assert plan.lines()[-2].endswith("db1: database memops")
    assert plan.lines()[-1].endswith("20250301T031500Z-8f3a in local /backups")
    assert plan.to_dict()["purged"][1] == {
        "host": "db1",
        "component": "postgresql",
        "path": "/var/lib/postgresql/15/memops",
    }


def test_an_unconfirmed_remove_is_refused_before_any_playbook_runs(tmp_path: Path) -> None:
    for args in ([], ["--purge-data"]):
        run = subprocess.run(
            [INVOKE, "remove", "--inventory", "tests/inventories/remove", *args],
            cwd=PROJECT_DIR,
            env={**os.environ, "MEMOPS_STATE_DIR": str(tmp_path)},
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            check=False,
        )
        assert run.returncode == 2, run.stderr
        assert "not interactive, pass --yes to confirm" in run.stderr
    assert not (tmp_path / "logs").exists()  # no playbook ran
