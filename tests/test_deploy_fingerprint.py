"""The deploy fingerprint: the module that asks and records it, and the lookups that feed it."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from memops.paths import PROJECT_DIR

MODULE = PROJECT_DIR / "plugins" / "modules" / "memops_fingerprint.py"
LOOKUPS = PROJECT_DIR / "plugins" / "lookup"


def _fingerprint(tmp_path: Path, **params: Any) -> dict[str, Any]:
    """Run the module as Ansible does (arguments in a JSON file) and return its result."""
    args = tmp_path / "args.json"
    args.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": params}))
    done = subprocess.run(
        [sys.executable, str(MODULE), str(args)], capture_output=True, text=True, check=False
    )
    result: dict[str, Any] = json.loads(done.stdout)
    assert "failed" not in result, result
    return result


def _status(tmp_path: Path, *, running: bool = True, **params: Any) -> dict[str, Any]:
    """state=status for service "app" whose status command exits 0 (runs) or 1: its entry."""
    result = _fingerprint(
        tmp_path,
        **params,
        state="status",
        name="app",
        manager="pidfile",
        status_argv=["true" if running else "false"],
        known={"other": {"was_running": True}},
    )
    status: dict[str, Any] = result["ansible_facts"]["memops_service_status"]
    assert status["other"] == {"was_running": True}  # what was known stays
    return {**status["app"], "why": result["why"]}


def test_a_status_tool_not_installed_yet_means_not_running(tmp_path: Path) -> None:
    """A blank host has no pg_ctlcluster before postgresql-common is installed."""
    result = _fingerprint(
        tmp_path,
        state="status",
        name="app",
        manager="pidfile",
        status_argv=["memops-no-such-status-tool", "15", "memops", "status"],
        path=str(tmp_path / "fingerprints.json"),
        known={},
    )
    status = result["ansible_facts"]["memops_service_status"]["app"]
    assert status["was_running"] is False and status["unchanged"] is False


def _lookup(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, LOOKUPS / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_record_then_check_matches_and_records_nothing_twice(tmp_path: Path) -> None:
    config = tmp_path / "app.conf"
    config.write_text("port 1\n")
    store = tmp_path / "deployed" / "app.json"
    params = {"path": str(store), "inputs": "digest-1", "watch": [str(config)]}

    assert _status(tmp_path, **params)["unchanged"] is False
    first = _fingerprint(tmp_path, **params, state="record", published={"release": "abc"})
    again = _fingerprint(tmp_path, **params, state="record", published={"release": "abc"})
    checked = _status(tmp_path, **params)

    assert first["changed"] is True and again["changed"] is False
    assert checked["unchanged"] is True and checked["published"] == {"release": "abc"}
    assert checked["was_running"] is True
    stopped = _status(tmp_path, running=False, **params)  # a stopped daemon runs the role
    assert stopped["unchanged"] is False and stopped["why"] == "not running"
    assert store.stat().st_mode & 0o777 == 0o600


def test_changed_inputs_content_mode_or_absence_do_not_match(tmp_path: Path) -> None:
    config = tmp_path / "app.conf"
    config.write_text("port 1\n")
    store = tmp_path / "app.json"
    params = {"path": str(store), "inputs": "digest-1", "watch": [str(config)]}
    _fingerprint(tmp_path, **params, state="record")

    assert _status(tmp_path, **{**params, "inputs": "digest-2"})["why"] == (
        "settings or memops code changed"
    )
    config.write_text("port 2\n")
    assert _status(tmp_path, **params)["why"] == "a managed file changed"
    config.write_text("port 1\n")
    assert _status(tmp_path, **params)["unchanged"] is True
    os.chmod(config, 0o666)
    assert _status(tmp_path, **params)["unchanged"] is False
    config.unlink()
    assert _status(tmp_path, **params)["unchanged"] is False


def test_check_mode_record_writes_nothing(tmp_path: Path) -> None:
    store = tmp_path / "app.json"
    result = _fingerprint(
        tmp_path, path=str(store), inputs="d", state="record", _ansible_check_mode=True
    )
    assert result["changed"] is True and not store.exists()


def test_role_options_are_the_union_of_the_entry_points() -> None:
    options = _lookup("memops_role_options").role_options("memops_service")
    assert "memops_service_command" in options  # main
    assert "memops_service_probe_kind" in options  # probe
    assert options == sorted(options)


def test_project_digest_follows_the_deployed_code(tmp_path: Path) -> None:
    digest = _lookup("memops_project_digest").project_digest
    (tmp_path / "roles" / "r" / "tasks").mkdir(parents=True)
    tasks = tmp_path / "roles" / "r" / "tasks" / "main.yml"
    tasks.write_text("---\n")
    before = digest(tmp_path)
    (tmp_path / "roles" / "r" / "__pycache__").mkdir()
    (tmp_path / "roles" / "r" / "__pycache__" / "x.pyc").write_bytes(b"\0")
    assert digest(tmp_path) == before  # bytecode caches do not count
    tasks.write_text("---\n- name: more\n")
    assert digest(tmp_path) != before


def test_role_templates_are_listed_without_a_templates_directory_too() -> None:
    lookup = _lookup("memops_role_templates").LookupModule()
    redis = lookup.run(["redis"])
    assert [Path(p).name for p in redis] == sorted(Path(p).name for p in redis)
    assert any(p.endswith("/roles/redis/templates/redis.conf.j2") for p in redis)
    assert lookup.run(["node_exporter"]) == []  # it has no templates directory
