"""The root tasks: bring the stack up, deploy it, probe it, render its observability, test."""

from __future__ import annotations

from invoke import Context

from memops.ops.checks import TEST
from memops.ops.deploy import DEPLOY
from memops.ops.health import HEALTH
from memops.ops.render import RENDER
from memops.ops.up import UP
from memops.tasks.common import memops_task, run


@memops_task()
def up(c: Context, inventory=None, json=False):
    """Render alerts and dashboards, deploy the stack and its monitoring, probe it, show where."""
    run(c, UP, locals())


@memops_task(
    help={
        "limit": "only these hosts or groups (ansible --limit)",
        "tags": "only these tags, comma-separated: redis, postgresql, qdrant, monitoring, …",
        "check": "dry run: report what would change, change nothing",
        "diff": "show file differences",
        "full": "run every task, also for components unchanged since their last healthy deploy",
    }
)
def deploy(
    c: Context,
    inventory=None,
    limit=None,
    tags=None,
    check=False,
    diff=False,
    full=False,
    json=False,
):
    """Deploy Redis, PostgreSQL, Qdrant and their monitoring; every role ends with its probe."""
    run(c, DEPLOY, locals())


@memops_task(
    help={
        "timeout": "seconds per probe attempt (default 2)",
        "retries": "retries of a failed probe, 0-10 (default 1)",
    }
)
def health(c: Context, inventory=None, json=False, timeout=None, retries=None):
    """Probe every component. Exit 0 healthy, 1 degraded, 2 failing."""
    run(c, HEALTH, locals())


@memops_task(
    help={
        "check": "render in memory and fail (exit 1) when the files on disk differ",
        "profile": "apply templates/profiles/NAME.yml (e.g. test: short `for` durations)",
        "out": "write into this directory instead of the repository (same layout)",
        "config": "the data file (default: templates/observability.yml)",
        "inventory": "where the audit line goes (default: as for the other tasks)",
    }
)
def render(
    c: Context, check=False, profile=None, out=None, config=None, inventory=None, json=False
):
    """Render alert rules, their promtool tests, runbooks and dashboards from templates/."""
    run(c, RENDER, locals())


@memops_task(
    help={
        "lint_only": "run the linters but not pytest",
        "fast": "skip the tests marked integration (they deploy the real services)",
    }
)
def test(c: Context, lint_only=False, fast=False):
    """Run the whole test suite: ruff, yamllint, ansible-lint (production), pytest."""
    run(c, TEST, locals())


ROOT_TASKS = (up, deploy, health, render, test)
