"""Run an Ansible playbook and read back what happened.

The memops_summary callback writes per-host stats and failures to a JSON file;
this module starts ansible-playbook, keeps its full output in a log file in
the state directory, and returns a PlaybookResult for invoke to print.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from memops.deploy.inventory import Inventory
from memops.paths import ANSIBLE_CONFIG, PLAYBOOK_DIR, PROJECT_DIR


@dataclass(frozen=True)
class PlaybookOptions:
    limit: str = ""
    tags: str = ""
    check: bool = False
    diff: bool = False
    extra_vars: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PlaybookResult:
    returncode: int
    hosts: dict[str, dict[str, int]]
    failures: list[dict[str, str]]
    changed_tasks: list[dict[str, str]]
    log_file: Path
    duration_s: float
    custom: dict[str, Any] = field(default_factory=dict)  # set_stats data, by host or "_run"

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.failures

    @property
    def changed(self) -> int:
        return sum(stats.get("changed", 0) for stats in self.hosts.values())

    @property
    def error_line(self) -> str:
        """One line naming the first problem, for humans and CI logs."""
        if self.failures:
            first = self.failures[0]
            verb = "unreachable" if first["kind"] == "unreachable" else "failed"
            return f"{first['host']}: {verb} at '{first['task']}': {first['msg']}"
        if self.returncode != 0:
            return f"ansible-playbook exited with {self.returncode}; see {self.log_file}"
        return ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "returncode": self.returncode,
            "changed": self.changed,
            "hosts": self.hosts,
            "failures": self.failures,
            "changed_tasks": self.changed_tasks,
            "log_file": str(self.log_file),
            "duration_s": round(self.duration_s, 2),
        }


def run_playbook(
    name: str, inventory: Inventory, options: PlaybookOptions, *, echo: bool = True
) -> PlaybookResult:
    """Run playbooks/<name>.yml against ``inventory``; stream its output when ``echo``."""
    state_dir = inventory.state_dir
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    log_dir = state_dir / "logs"
    log_dir.mkdir(mode=0o700, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    log_file = log_dir / f"{name}-{stamp}.log"
    extra = {
        "memops_state_dir": str(state_dir),
        "memops_inventory_name": inventory.name,
        # Plays on the implicit localhost of an inventory of other hosts have no
        # inventory_dir: the controller's jobs need the path all the same.
        "memops_inventory_path": str(inventory.path),
        **options.extra_vars,
    }
    argv = [
        str(Path(sys.executable).with_name("ansible-playbook")),
        "-i",
        str(inventory.path),
        str(PLAYBOOK_DIR / f"{name}.yml"),
        "-e",
        json.dumps(extra),
    ]
    if options.limit:
        argv += ["--limit", options.limit]
    if options.tags:
        argv += ["--tags", options.tags]
    if options.check:
        argv.append("--check")
    if options.diff:
        argv.append("--diff")

    with tempfile.NamedTemporaryFile(prefix="memops-result-", suffix=".json") as result_file:
        env = {
            **os.environ,
            "ANSIBLE_CONFIG": str(ANSIBLE_CONFIG),
            "MEMOPS_RESULT_FILE": result_file.name,
            "ANSIBLE_FORCE_COLOR": "1" if echo and sys.stdout.isatty() else "0",
            **mitogen_settings(os.environ),
        }
        started = datetime.now(UTC)
        returncode = _run_logged(argv, env, log_file, echo)
        duration = (datetime.now(UTC) - started).total_seconds()
        summary = _read_summary(Path(result_file.name))
    return PlaybookResult(
        returncode=returncode,
        hosts=summary.get("hosts", {}),
        failures=summary.get("failures", []),
        changed_tasks=summary.get("changed_tasks", []),
        log_file=log_file,
        duration_s=duration,
        custom=summary.get("custom", {}),
    )


def mitogen_settings(environ: Mapping[str, str]) -> dict[str, str]:
    """Run plays with mitogen's strategy (far fewer round trips per task), unless
    ``MEMOPS_MITOGEN=0`` or the package is missing; ansible.cfg cannot name the
    installed package's path, so it is set here."""
    if environ.get("MEMOPS_MITOGEN", "1") == "0":
        return {}
    spec = importlib.util.find_spec("ansible_mitogen")
    if spec is None or spec.origin is None:
        return {}
    plugins = Path(spec.origin).parent / "plugins" / "strategy"
    return {"ANSIBLE_STRATEGY_PLUGINS": str(plugins), "ANSIBLE_STRATEGY": "mitogen_linear"}


def _run_logged(argv: list[str], env: dict[str, str], log_file: Path, echo: bool) -> int:
    fd = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as log:
        process = subprocess.Popen(
            argv,
            cwd=PROJECT_DIR,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            errors="replace",
        )
        assert process.stdout is not None
        for line in process.stdout:
            log.write(line)
            if echo:
                sys.stderr.write(line)
        return process.wait()


def _read_summary(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
        return json.loads(text) if text else {}
    except (OSError, ValueError):
        return {}
