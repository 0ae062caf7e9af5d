"""The root tasks: bring the stack up, deploy it, probe it, render its observability, test."""

from __future__ import annotations

from invoke import Context

from memops.ops.checks import TEST
from memops.ops.deploy import DEPLOY
from memops.ops.health import HEALTH
from memops.ops.render import RENDER
from memops.ops.up import UP
from memops.tasks.common import memops_task


@memops_task(UP)
def up(c: Context, inventory=None, json=False):
    """Render alerts and dashboards, deploy the stack and its monitoring, probe it, show where."""


@memops_task(DEPLOY)
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


@memops_task(HEALTH)
def health(c: Context, inventory=None, json=False, timeout=None, retries=None):
    """Probe every component. Exit 0 healthy, 1 degraded, 2 failing."""


@memops_task(RENDER)
def render(
    c: Context, check=False, profile=None, out=None, config=None, inventory=None, json=False
):
    """Render alert rules, their promtool tests, runbooks and dashboards from templates/."""


@memops_task(TEST)
def test(c: Context, lint_only=False, fast=False):
    """Run the whole test suite: ruff, yamllint, ansible-lint, mypy, the docs build, pytest."""


ROOT_TASKS = (up, deploy, health, render, test)
