"""The root tasks: bring the stack up, deploy it, probe it, render its observability, remove
it, test."""

from __future__ import annotations

from memops.ops.checks import TEST
from memops.ops.deploy import DEPLOY
from memops.ops.health import HEALTH
from memops.ops.remove import REMOVE
from memops.ops.render import RENDER
from memops.ops.switchover import SWITCHOVER
from memops.ops.up import UP
from memops.tasks.common import operation_task

up = operation_task(
    UP, "Render alerts and dashboards, deploy the stack and its monitoring, probe it, show where."
)


deploy = operation_task(
    DEPLOY, "Deploy Redis, PostgreSQL, Qdrant and their monitoring; every role ends with its probe."
)


health = operation_task(HEALTH, "Probe every component. Exit 0 healthy, 1 degraded, 2 failing.")


render = operation_task(
    RENDER, "Render alert rules, their promtool tests, runbooks and dashboards from templates/."
)


remove = operation_task(
    REMOVE, "Stop and remove the deployed stack; its data and backup sets only with --purge-data."
)


switchover = operation_task(
    SWITCHOVER,
    "Switch a replicated tier's primary through its engine (Sentinel, Patroni); probe after.",
)


test = operation_task(
    TEST,
    "Run the whole test suite: ruff, yamllint, ansible-lint, mypy, the docs build, pytest.",
    runner_options=False,
)


ROOT_TASKS = (up, deploy, health, render, remove, switchover, test)
