"""Invoke tasks: the commands memops users type. Each one is a thin wrapper over memops.ops."""

from __future__ import annotations

import os
import sys

from invoke import Exit, task

from memops.ops.deploy import deploy as deploy_stack
from memops.ops.health import health as probe_health
from memops.ops.render import render as render_observability
from memops.ops.up import up as bring_up
from memops.playbook import PlaybookOptions

DEFAULT_INVENTORY = os.environ.get("MEMOPS_INVENTORY", "local")
PROJECT_DIR = os.path.dirname(os.path.abspath(__file__))


def _finish(code: int) -> None:
    if code:
        raise Exit(code=code)


@task(
    help={
        "inventory": "inventory name under inventory/ or a path (default: local)",
        "limit": "only these hosts or groups (ansible --limit)",
        "tags": "only these tags: redis, postgresql, qdrant",
        "check": "dry run: report what would change, change nothing",
        "diff": "show file differences",
        "json": "print the result as JSON (Ansible's output goes to the log file only)",
    }
)
def deploy(c, inventory=DEFAULT_INVENTORY, limit="", tags="", check=False, diff=False, json=False):
    """Deploy Redis, PostgreSQL and Qdrant; every role ends with its health probe."""
    options = PlaybookOptions(limit=limit, tags=tags, check=check, diff=diff)
    _finish(deploy_stack(inventory, options, as_json=json))


@task(
    help={
        "inventory": "inventory name or path (default: local)",
        "json": "print the health snapshot as one JSON object",
        "timeout": "seconds per probe attempt (default 2)",
        "retries": "retries of a failed probe (default 1)",
    }
)
def health(c, inventory=DEFAULT_INVENTORY, json=False, timeout=2.0, retries=1):
    """Probe every component. Exit 0 healthy, 1 degraded, 2 failing."""
    _finish(probe_health(inventory, as_json=json, timeout_s=float(timeout), retries=int(retries)))


@task(
    help={
        "inventory": "inventory name or path (default: local)",
        "json": "print the summary as JSON",
    }
)
def up(c, inventory=DEFAULT_INVENTORY, json=False):
    """Render alerts and dashboards, deploy the stack and its monitoring, probe it, show where."""
    _finish(bring_up(inventory, as_json=json))


@task(
    help={
        "check": "render in memory and fail (exit 1) when the files on disk differ",
        "profile": "apply templates/profiles/NAME.yml (e.g. test: short `for` durations)",
        "out": "write into this directory instead of the repository (same layout)",
        "config": "the data file (default: templates/observability.yml)",
        "json": "print the result as JSON",
    }
)
def render(c, check=False, profile="", out="", config="", json=False):
    """Render alert rules, their promtool tests, runbooks and dashboards from templates/."""
    _finish(
        render_observability(check=check, profile=profile, out=out, config=config, as_json=json)
    )


@task(help={"lint_only": "run the linters but not pytest"})
def test(c, lint_only=False):
    """Run the whole test suite: ruff, yamllint, ansible-lint (production), pytest."""
    bin_dir = os.path.dirname(sys.executable)
    steps = [
        f"{bin_dir}/ruff check .",
        f"{bin_dir}/ruff format --check .",
        f"{bin_dir}/yamllint -s .",
        f"{bin_dir}/ansible-lint --profile production",
    ]
    if not lint_only:
        steps.append(f"{bin_dir}/pytest")
    with c.cd(PROJECT_DIR):
        for step in steps:
            print(f"$ {step}", flush=True)
            c.run(step, pty=False)
