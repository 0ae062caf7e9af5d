"""`invoke remove`: a stack deployed by the project's own playbook goes, its data stays, and
`--purge-data` (confirmed) deletes the data too.

tests/inventories/remove deploys a whole stack (instance memops-remove, ports 300 above the
test stack's) into a state directory of this module's own, with the backup schedule on and a
backup set taken. The tests run in file order: the dry runs and the refusals touch nothing,
the remove stops and removes everything but the data, a second remove changes nothing, and
the purge deletes the data, the databases and the backup set. The stack is purged at the
end whatever happened, so no service of this module outlives it.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from integration_helpers import INVENTORIES, Run, invoke, port_open

from memops.deploy.inventory import resolve_inventory
from memops.deploy.playbook import PlaybookOptions, run_playbook

pytestmark = pytest.mark.integration

REMOVE_INVENTORY = str(INVENTORIES / "remove")
INSTANCE = "memops-remove"
PORTS = (26679, 25732, 26633, 26634, 29400, 29421, 29487, 29390, 29393)
DATA_DIRS = (
    f"/var/lib/redis/{INSTANCE}",
    f"/var/lib/postgresql/15/{INSTANCE}",
    f"/var/lib/qdrant/{INSTANCE}",
    f"/var/lib/memops-monitoring/{INSTANCE}/prometheus",
    f"/var/lib/memops-monitoring/{INSTANCE}/alertmanager",
)
CONFIGS = (
    f"/etc/redis/{INSTANCE}.conf",
    f"/etc/redis/{INSTANCE}.secrets.conf",
    f"/etc/logrotate.d/memops-redis-{INSTANCE}",
    f"/etc/qdrant/{INSTANCE}",
    f"/opt/qdrant/{INSTANCE}",
    f"/etc/memops-monitoring/{INSTANCE}/prometheus",
    f"/etc/memops-monitoring/{INSTANCE}/alertmanager",
    f"/etc/memops-monitoring/{INSTANCE}/node_exporter",
    f"/etc/memops-monitoring/{INSTANCE}/redis_exporter",
    f"/etc/memops-monitoring/{INSTANCE}/postgres_exporter",
    f"/var/lib/memops-monitoring/{INSTANCE}/grafana/dashboards",
)
PIDFILES = tuple(
    f"/run/{name}.pid"
    for name in (
        f"redis-{INSTANCE}",
        f"qdrant-{INSTANCE}",
        f"memops-node-exporter-{INSTANCE}",
        f"memops-redis-exporter-{INSTANCE}",
        f"memops-postgres-exporter-{INSTANCE}",
        f"memops-prometheus-{INSTANCE}",
        f"memops-alertmanager-{INSTANCE}",
    )
)


@dataclass(frozen=True)
class Stack:
    state_dir: Path
    backup_set: str

    def invoke(self, *args: str) -> Run:
        return invoke(
            *args, "--inventory", REMOVE_INVENTORY, env={"MEMOPS_STATE_DIR": str(self.state_dir)}
        )

    def remove(self, *args: str) -> Run:
        return self.invoke("remove", "--json", *args)

    @property
    def cron_file(self) -> Path:
        return Path(f"/etc/cron.d/memops-backup-{self.state_dir.name}")


def _schedule(state_dir: Path) -> None:
    """The backup schedule on, at a minute and hour no job fires in while the module runs."""
    now = datetime.datetime.now()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MEMOPS_STATE_DIR", str(state_dir))
        result = run_playbook(
            "deploy",
            resolve_inventory(REMOVE_INVENTORY),
            PlaybookOptions(
                tags="backup_schedule",
                extra_vars={
                    "memops_backup_schedule_enabled": True,
                    "memops_backup_schedule_backup_minute": str((now.minute + 30) % 60),
                    "memops_backup_schedule_drill_hour": str((now.hour + 12) % 24),
                    "memops_backup_schedule_health_enabled": False,
                },
            ),
            echo=False,
        )
    assert result.ok, result.error_line


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    state_dir = tmp_path_factory.mktemp("remove-state")
    env = {"MEMOPS_STATE_DIR": str(state_dir)}
    try:
        run = invoke("deploy", "--inventory", REMOVE_INVENTORY, "--json", env=env)
        assert run.returncode == 0, f"deploy failed: {run.stderr.strip()}\n{run.stdout[-3000:]}"
        _schedule(state_dir)
        backup = invoke("backup.create", "--inventory", REMOVE_INVENTORY, "--json", env=env)
        assert backup.returncode == 0, backup.stderr
        yield Stack(state_dir, backup.json()["set_id"])
    finally:
        purge = invoke("remove", "--inventory", REMOVE_INVENTORY, "--purge-data", "--yes", env=env)
        assert purge.returncode == 0, purge.stderr


def _running() -> list[str]:
    """Processes whose command line names the instance or one of its ports."""
    marks = (INSTANCE, *(f":{port}" for port in PORTS))
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if any(mark in argv for mark in marks) and "pytest" not in argv:
            found.append(f"{entry.name}: {argv.strip()}")
    return found


def _paths(document: dict[str, Any], action: str) -> set[str]:
    return {item["path"] for item in document[action]}


def _assert_untouched(stack: Stack) -> None:
    assert [port for port in PORTS if port != 26634 and not port_open("127.0.0.1", port)] == []
    assert (stack.state_dir / "targets.json").is_file()
    assert stack.cron_file.is_file()
    assert all(Path(path).exists() for path in (*CONFIGS, *DATA_DIRS, *PIDFILES))


def test_the_dry_run_names_what_goes_and_touches_nothing(stack: Stack) -> None:
    run = stack.remove("--dry-run")
    assert run.returncode == 0, run.stderr
    document = run.json()
    assert document["dry_run"] is True
    assert {item["service"] for item in document["stopped"]} >= {
        f"redis-{INSTANCE}",
        f"postgresql@15-{INSTANCE}",
        f"qdrant-{INSTANCE}",
        f"memops-prometheus-{INSTANCE}",
    }
    assert set(CONFIGS) | {str(stack.cron_file)} <= _paths(document, "removed")
    assert set(DATA_DIRS) <= _paths(document, "kept")
    assert document["purged"] == [] and document["backup_sets"] == []
    _assert_untouched(stack)


def test_the_purge_dry_run_names_every_path_database_and_set_it_deletes(stack: Stack) -> None:
    run = stack.remove("--purge-data", "--dry-run")
    assert run.returncode == 0, run.stderr
    document = run.json()
    assert set(DATA_DIRS) <= _paths(document, "purged")
    assert [d["database"] for d in document["databases"]] == ["memops"]
    assert document["backup_sets"] == [stack.backup_set]
    human = stack.invoke("remove", "--purge-data", "--dry-run").stdout.splitlines()
    assert human[0].startswith("dry run of remove on inventory remove, nothing changed")
    assert any(
        line.split()[:3] == ["delete", "backup", "set"] and stack.backup_set in line
        for line in human
    )
    assert any(
        line.split()[:2] == ["delete", "postgresql"] and "database memops" in line for line in human
    )
    _assert_untouched(stack)


def test_without_yes_and_no_terminal_nothing_is_removed(stack: Stack) -> None:
    for args in ((), ("--purge-data",)):
        run = stack.remove(*args)
        assert run.returncode == 2, run.stderr
        assert "not interactive, pass --yes" in run.stderr
        assert run.json()["ok"] is False
    _assert_untouched(stack)


def test_remove_stops_everything_and_keeps_the_data(stack: Stack) -> None:
    run = stack.remove("--yes")
    assert run.returncode == 0, run.stderr
    document = run.json()
    assert [port for port in PORTS if port_open("127.0.0.1", port)] == []
    assert _running() == []
    assert [path for path in (*CONFIGS, *PIDFILES) if Path(path).exists()] == []
    assert not stack.cron_file.exists()
    assert [path for path in _paths(document, "removed") if Path(path).exists()] == []
    assert [path for path in DATA_DIRS if not Path(path).is_dir()] == []
    assert "manual" in Path(f"/etc/postgresql/15/{INSTANCE}/start.conf").read_text().split()
    assert stack.backup_set in [
        s["set_id"] for s in stack.invoke("backup.list", "--json").json()["sets"]
    ]
    assert not (stack.state_dir / "targets.json").exists()
    health = stack.invoke("health")
    assert health.returncode == 2
    assert "nothing deployed" in health.stderr


def test_a_second_remove_changes_nothing(stack: Stack) -> None:
    run = stack.remove("--yes")
    assert run.returncode == 0, run.stderr
    document = run.json()
    assert document["changed"] == 0, document["changed_tasks"]
    assert document["stopped"] == [] and document["removed"] == []


def test_purge_deletes_the_data_and_the_backup_sets(stack: Stack) -> None:
    run = stack.remove("--purge-data", "--yes")
    assert run.returncode == 0, run.stderr
    document = run.json()
    assert set(DATA_DIRS) <= _paths(document, "purged")
    assert [path for path in DATA_DIRS if Path(path).exists()] == []
    assert not Path(f"/etc/postgresql/15/{INSTANCE}").exists()
    assert document["backup_sets"] == [stack.backup_set]
    assert stack.invoke("backup.list", "--json").json()["sets"] == []
    again = stack.remove("--purge-data", "--yes")
    assert again.returncode == 0 and again.json()["changed"] == 0
