"""The recurring ops jobs of roles/memops_backup_schedule, rendered the way Ansible renders them.

The cron entry's `job` and `state` and the systemd service unit come from the role's own
files (defaults, vars, tasks/cron.yml, templates/service.j2) through Ansible's templating,
so no host is touched. What they prove: the health job is scheduled every 5 minutes by
default and its flag turns off only that job; no two default jobs start in the same minute
of the day, under cron or systemd; every job runs a task that exists with the flags it
passes and waits for the stack lock (MEMOPS_LOCK_WAIT); the rendered health command line,
run by /bin/sh with cron's bare environment against a Qdrant stand-in, writes its cycle into
the state directory the job names (state.json, runtime-events.jsonl, one JSON document per
run in its log), not into the project's default .state/<inventory>; and the rendered backup
command line, while another process holds the stack lock, waits for it and backs up once it
is free, or gives up at its deadline: exit 2, one error line naming the holder, a lock-busy
audit line and the skipped-run metric.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import os
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template
from root_tasks import root_collection
from standin_server import RunningStandin

from memops import paths
from memops.audit import AUDIT_FILE
from memops.backup.metrics import SKIPPED_TEXTFILE
from memops.deploy.targets_file import merge_targets
from memops.health.state import EVENTS_FILE, STATE_FILE
from memops.locking import action_lock

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
        memops_inventory_path=str(inventory),
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


def _expand(field: str, low: int, high: int) -> set[int]:
    """The values a cron field (or an OnCalendar hour/minute field) stands for."""
    values: set[int] = set()
    for part in str(field).split(","):
        base, _, step = part.partition("/")
        if base == "*":
            start, stop = low, high
        elif "-" in base:
            first, last = base.split("-")
            start, stop = int(first), int(last)
        else:  # a number; with a step (systemd's 0/15) it repeats to the end
            start = int(base)
            stop = high if step else start
        values.update(range(start, stop + 1, int(step or 1)))
    assert values and values <= set(range(low, high + 1)), field
    return values


def _starts(hour: str, minute: str) -> set[int]:
    """The minutes of the day (0-1439) a job with these fields starts in."""
    return {h * 60 + m for h in _expand(hour, 0, 23) for m in _expand(minute, 0, 59)}


def test_the_jobs_name_the_inventory_memops_passes_without_an_inventory_dir(
    tmp_path: Path,
) -> None:
    """The implicit localhost of an inventory of other hosts has no inventory_dir (a deploy
    of the staging example failed on it); memops passes the path as memops_inventory_path."""
    variables = _role_vars(tmp_path / "state", tmp_path / "staging")
    assert "inventory_dir" not in variables
    for job in _jobs(variables).values():
        line = _cron_field(variables, job, "job")
        assert f"--inventory {tmp_path / 'staging'} " in line, line


def test_run_playbook_passes_the_inventory_path(tmp_path: Path, monkeypatch: Any) -> None:
    from memops.deploy import playbook
    from memops.deploy.inventory import resolve_inventory

    seen: list[list[str]] = []

    def fake_run(argv: list[str], **kwargs: Any) -> Any:
        seen.append(argv)
        raise OSError("stop here")

    (tmp_path / "inv").mkdir()
    (tmp_path / "inv" / "hosts.yml").write_text("---\nall:\n  hosts:\n    db1:\n")
    monkeypatch.setenv("MEMOPS_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setattr(playbook.subprocess, "Popen", fake_run)
    inventory = resolve_inventory(str(tmp_path / "inv"))
    with contextlib.suppress(OSError):
        playbook.run_playbook("deploy", inventory, playbook.PlaybookOptions(), echo=False)
    extra = json.loads(seen[0][seen[0].index("-e") + 1])
    assert extra["memops_inventory_path"] == str(inventory.path)


def test_the_field_expansion_the_schedule_tests_rely_on() -> None:
    assert _expand("*/15", 0, 59) == {0, 15, 30, 45}
    assert _expand("1-59/15", 0, 59) == {1, 16, 31, 46}
    assert _expand("0/20", 0, 59) == {0, 20, 40}
    assert _expand("3,8,10-12", 0, 59) == {3, 8, 10, 11, 12}
    assert len(_starts("*", "*")) == 1440
    assert _starts("3", "30") == {210}


def _gaps(minutes: set[int]) -> set[int]:
    ordered = sorted(minutes)
    return {(b - a) % 1440 for a, b in zip(ordered, [*ordered[1:], ordered[0] + 1440], strict=True)}


def test_the_health_job_runs_every_five_minutes_by_default(tmp_path: Path) -> None:
    variables = _role_vars(tmp_path / "state", tmp_path / "inv")
    jobs = _jobs(variables)
    assert set(jobs) == {"create", "drill", "health"}
    assert jobs["health"]["task"] == "health"
    assert _gaps(_starts(jobs["health"]["hour"], jobs["health"]["minute"])) == {5}
    assert jobs["health"]["log"] == str(tmp_path / "state" / "logs" / "health-schedule.log")
    for job in jobs.values():
        assert _cron_field(variables, job, "state") == "present", job["name"]


def _timer_starts(variables: dict[str, Any], job: dict[str, Any]) -> set[int]:
    timer = (ROLE / "templates" / "timer.j2").read_text(encoding="utf-8")
    text = _render({**variables, "item": [job, "timer"]}, timer)
    [calendar] = re.findall(r"^OnCalendar=\*-\*-\* (\S+):(\S+):00$", text, re.MULTILINE)
    return _starts(*calendar)


def test_no_two_default_jobs_start_in_the_same_minute(tmp_path: Path) -> None:
    """Issue #22: the drill and a backup both started at 03:30 and one lost the lock."""
    variables = _role_vars(tmp_path / "state", tmp_path / "inv")
    jobs = _jobs(variables)
    starts = {name: _starts(job["hour"], job["minute"]) for name, job in jobs.items()}
    for name, job in jobs.items():  # the systemd timers start them in the same minutes
        assert _timer_starts(variables, job) == starts[name], name
    assert _gaps(starts["create"]) == {15}  # the 15-minute RPO
    assert len(starts["drill"]) == 1  # daily
    per_minute = Counter(minute for minutes in starts.values() for minute in minutes)
    shared = {
        f"{minute // 60:02d}:{minute % 60:02d}": sorted(n for n in starts if minute in starts[n])
        for minute, count in per_minute.items()
        if count > 1
    }
    assert shared == {}, f"jobs that start in the same minute: {shared}"
    assert sum(per_minute.values()) == 96 + 1 + 288


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


@pytest.mark.parametrize(
    ("overrides", "wait"), [({}, "600"), ({"memops_backup_schedule_lock_wait_s": 45}, "45")]
)
def test_every_scheduled_job_waits_for_the_stack_lock(
    tmp_path: Path, overrides: dict[str, Any], wait: str
) -> None:
    variables = _role_vars(tmp_path / "state", tmp_path / "inv", **overrides)
    service = (ROLE / "templates" / "service.j2").read_text(encoding="utf-8")
    for job in _jobs(variables).values():
        line = _cron_field(variables, job, "job")
        assert f" MEMOPS_LOCK_WAIT={wait} " in f" {line} ", line
        unit = _render({**variables, "item": [job, "service"]}, service).splitlines()
        assert f"Environment=MEMOPS_LOCK_WAIT={wait}" in unit


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


CRON_ENV = {"PATH": "/usr/bin:/bin", "HOME": "/root", "SHELL": "/bin/sh", "LANG": "C.UTF-8"}


def _log_entries(text: str) -> tuple[list[dict[str, Any]], list[str]]:
    """A job log: the --json documents and memops' own stderr lines (``memops TASK: …``)
    in it (libraries' warnings left out)."""
    decoder, documents, lines, at = json.JSONDecoder(), [], [], 0
    while at < len(text):
        if text[at].isspace():
            at += 1
        elif text.startswith("{", at):
            document, at = decoder.raw_decode(text, at)
            documents.append(document)
        else:
            end = text.find("\n", at)
            end = len(text) if end < 0 else end
            lines.append(text[at:end])
            at = end
    return documents, [line for line in lines if line.startswith("memops ")]


def _audit(state: Path) -> list[dict[str, Any]]:
    path = state / AUDIT_FILE
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _skipped(textfiles: Path) -> dict[str, float]:
    found = {}
    for line in (textfiles / SKIPPED_TEXTFILE).read_text().splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            found[name] = float(value)
    return found


def test_a_scheduled_backup_waits_for_the_lock_or_gives_up_and_says_so(
    inventory: tuple[Path, Path], tmp_path: Path
) -> None:
    """The cron line of backup.create, run by /bin/sh as cron runs it, while this process
    holds the stack lock (as the daily drill would): first with a 1 s wait, then with the
    default one, letting go once the job says it waits."""
    root, state = inventory
    textfiles = tmp_path / "textfile"
    textfiles.mkdir()
    merge_targets(state, root.name, {}, {"textfile_dir": str(textfiles)})
    log = state / "logs" / "backup-schedule.log"
    holder = f"backup.drill pid {os.getpid()}"

    # 1. It waits one second, gives up, and says whom for.
    impatient = _role_vars(state, root, memops_backup_schedule_lock_wait_s=1)
    job = _jobs(impatient)["create"]
    assert job["log"] == str(log)
    before = time.time()
    with action_lock(state, "backup.drill"):
        run = subprocess.run(
            ["/bin/sh", "-c", _cron_field(impatient, job, "job")],
            env=CRON_ENV,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert run.returncode == 2, log.read_text()
    documents, lines = _log_entries(log.read_text())
    assert lines == [
        f"memops backup.create: the stack lock is held by {holder}; waiting up to 1 s for it",
        f"memops backup.create: gave up after waiting 1 s for {state / 'action.lock'}, "
        f"held by {holder}; this run did nothing",
    ]
    [document] = documents
    assert document["ok"] is False and document["lock"]["holder"] == holder
    assert document["lock"]["waited_s"] >= 1
    [line] = _audit(state)
    assert (line["action"], line["result"]) == ("backup.create", "lock-busy")
    assert line["details"]["holder"] == holder
    skipped = _skipped(textfiles)
    assert skipped['memops_backup_last_run_skipped{task="backup.create"}'] == 1
    assert skipped['memops_backup_skipped_total{task="backup.create"}'] == 1
    when = skipped['memops_backup_last_skipped_timestamp_seconds{task="backup.create"}']
    assert before < when < time.time()
    assert not (state / "backups").exists() or not any((state / "backups").iterdir())

    # 2. With the default wait it says so, and backs up as soon as the lock is free.
    variables = _role_vars(state, root)
    job = _jobs(variables)["create"]
    waiting = (
        f"memops backup.create: the stack lock is held by {holder}; waiting up to 600 s for it"
    )
    log.write_text("")
    with action_lock(state, "backup.drill"):
        patient = subprocess.Popen(
            ["/bin/sh", "-c", _cron_field(variables, job, "job")],
            env=CRON_ENV,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        deadline = time.monotonic() + 60
        while waiting not in log.read_text() and time.monotonic() < deadline:
            assert patient.poll() is None, log.read_text()
            time.sleep(0.2)
        assert waiting in log.read_text()
        time.sleep(1)
        assert patient.poll() is None, "it did not wait for the lock"
    assert patient.wait(120) == 0, log.read_text()
    documents, lines = _log_entries(log.read_text())
    assert lines == [waiting]
    [document] = documents
    assert document["ok"] is True and document["tiers"] == ["qdrant"]
    started, done = _audit(state)[1:]
    assert (started["result"], done["result"]) == ("started", "ok")
    assert done["details"]["set_id"] == document["set_id"]
    assert done["details"]["lock_holder"] == holder and done["details"]["lock_waited_s"] >= 1
    skipped = _skipped(textfiles)
    assert skipped['memops_backup_last_run_skipped{task="backup.create"}'] == 0
    assert skipped['memops_backup_skipped_total{task="backup.create"}'] == 1
