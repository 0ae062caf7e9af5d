"""The recurring ops jobs of roles/memops_backup_schedule, rendered the way Ansible renders them.

The cron entry's `job` and `state` and the systemd service unit come from the role's own
files (defaults, vars, tasks/cron.yml, templates/service.j2) through Ansible's templating,
so no host is touched. What they prove: the health job is scheduled every 5 minutes by
default and its flag turns off only that job; every job runs a task that exists with the
flags it passes; and the rendered health command line, run by /bin/sh with cron's bare
environment against a Qdrant stand-in, writes its cycle into the state directory the job
names (state.json, runtime-events.jsonl, one JSON document per run in its log), not into the
project's default .state/<inventory>.
"""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template
from root_tasks import root_collection
from standin_server import RunningStandin

from memops import paths
from memops.health_state import EVENTS_FILE, STATE_FILE
from memops.targets_file import merge_targets

ROLE = paths.ROLES_DIR / "memops_backup_schedule"
INVOKE = str(Path(sys.executable).with_name("invoke"))


def _trusted(value: Any) -> Any:
    """YAML read here is the role's own source: let Ansible template its strings."""
    if isinstance(value, str):
        return trust_as_template(value)
    if isinstance(value, list):
        return [_trusted(item) for item in value]
    if isinstance(value, dict):
        return {key: _trusted(item) for key, item in value.items()}
    return value


def _role_vars(state_dir: Path, inventory: Path, **overrides: Any) -> dict[str, Any]:
    """defaults + vars of the role, with the variables a deploy run provides."""
    found: dict[str, Any] = {}
    for part in ("defaults", "vars"):
        found.update(yaml.safe_load((ROLE / part / "main.yml").read_text(encoding="utf-8")))
    found.update(
        memops_state_dir=str(state_dir),
        inventory_dir=str(inventory),
        playbook_dir=str(paths.PLAYBOOK_DIR),
        ansible_playbook_python=sys.executable,
        ansible_managed="managed",
        **overrides,
    )
    return _trusted(found)


def _render(variables: dict[str, Any], template: Any) -> Any:
    return Templar(loader=DataLoader(), variables=variables).template(_trusted(template))


def _jobs(variables: dict[str, Any]) -> dict[str, dict[str, Any]]:
    rendered = _render(variables, variables["_memops_backup_schedule_jobs"])
    return {job["name"]: job for job in rendered}


def _cron_module() -> dict[str, Any]:
    tasks = yaml.safe_load((ROLE / "tasks" / "cron.yml").read_text(encoding="utf-8"))
    [task] = [task for task in tasks if "ansible.builtin.cron" in task]
    return task["ansible.builtin.cron"]


def _cron_field(variables: dict[str, Any], job: dict[str, Any], name: str) -> Any:
    return _render({**variables, "item": job}, _cron_module()[name])


def test_the_health_job_runs_every_five_minutes_by_default(tmp_path: Path) -> None:
    variables = _role_vars(tmp_path / "state", tmp_path / "inv")
    jobs = _jobs(variables)
    assert set(jobs) == {"create", "drill", "health"}
    assert (jobs["health"]["task"], jobs["health"]["minute"], jobs["health"]["hour"]) == (
        "health",
        "*/5",
        "*",
    )
    assert jobs["health"]["log"] == str(tmp_path / "state" / "logs" / "health-schedule.log")
    for job in jobs.values():
        assert _cron_field(variables, job, "state") == "present", job["name"]


@pytest.mark.parametrize(
    ("overrides", "present"),
    [
        ({"memops_backup_schedule_health_enabled": False}, {"create", "drill"}),
        ({"memops_backup_schedule_enabled": False}, set()),
        ({"memops_backup_schedule_health_minute": "*/10"}, {"create", "drill", "health"}),
    ],
)
def test_each_flag_removes_what_it_says(
    tmp_path: Path, overrides: dict[str, Any], present: set[str]
) -> None:
    variables = _role_vars(tmp_path / "state", tmp_path / "inv", **overrides)
    states = {name: _cron_field(variables, job, "state") for name, job in _jobs(variables).items()}
    assert {name for name, state in states.items() if state == "present"} == present
    assert {name for name, state in states.items() if state == "absent"} == set(states) - present


def test_every_job_runs_a_task_that_takes_its_flags(tmp_path: Path) -> None:
    tasks = root_collection()
    for job in _jobs(_role_vars(tmp_path / "state", tmp_path / "inv")).values():
        parameters = set(inspect.signature(tasks[job["task"]].body).parameters)
        assert {"inventory", "json"} <= parameters, job["task"]


def test_the_systemd_unit_of_the_health_job(tmp_path: Path) -> None:
    state = tmp_path / "state"
    variables = _role_vars(state, tmp_path / "inv")
    service = (ROLE / "templates" / "service.j2").read_text(encoding="utf-8")
    text = _render({**variables, "item": [_jobs(variables)["health"], "service"]}, service)
    lines = text.splitlines()
    assert f"Environment=MEMOPS_STATE_DIR={state}" in lines
    assert f"ExecStart={INVOKE} health --inventory {tmp_path / 'inv'} --json" in lines
    assert f"StandardOutput=append:{state / 'logs' / 'health-schedule.log'}" in lines


@pytest.fixture
def inventory(tmp_path: Path, standin: RunningStandin) -> tuple[Path, Path]:
    """An inventory whose state directory (not the project's default) records the stand-in."""
    root = tmp_path / "inv-schedule-test"
    (root / "group_vars").mkdir(parents=True)
    (root / "hosts.yml").write_text("all:\n  hosts:\n    localhost:\n")
    state = tmp_path / "state with space"
    component = {"kind": "qdrant", "url": standin.url, "api_key": standin.api_key}
    merge_targets(state, root.name, {"qdrant": component}, {})
    (state / "logs").mkdir(mode=0o700)
    return root, state


def test_the_cron_health_job_writes_its_cycles_into_its_state_dir(
    inventory: tuple[Path, Path],
) -> None:

    root, state = inventory
    variables = _role_vars(state, root)
    job = _jobs(variables)["health"]
    line = _cron_field(variables, job, "job")
    default_state = paths.STATE_ROOT / root.name
    assert not default_state.exists()
    cron_env = {"PATH": "/usr/bin:/bin", "HOME": "/root", "SHELL": "/bin/sh", "LANG": "C.UTF-8"}
    try:
        for _ in range(2):
            run = subprocess.run(
                ["/bin/sh", "-c", line], env=cron_env, capture_output=True, text=True, timeout=120
            )
            assert run.returncode == 0, (run.stdout, run.stderr, Path(job["log"]).read_text())
        assert not default_state.exists(), "the cycle went to the project's default state dir"
    finally:
        if default_state.is_dir():
            for path in sorted(default_state.rglob("*"), reverse=True):
                path.rmdir() if path.is_dir() else path.unlink()
            default_state.rmdir()

    assert json.loads((state / STATE_FILE).read_text())["health_state"] == "healthy"
    events = [json.loads(line) for line in (state / EVENTS_FILE).read_text().splitlines()]
    assert len(events) == 2
    decoder, log, documents, at = json.JSONDecoder(), Path(job["log"]).read_text(), [], 0
    while at < len(log.rstrip()):
        document, at = decoder.raw_decode(log, at)
        documents.append(document)
        at += len(log[at:]) - len(log[at:].lstrip())
    assert len(documents) == 2, log
    assert [document["checked_at"] for document in documents] == [event["at"] for event in events]
