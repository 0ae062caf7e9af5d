"""The contract between tasks and operations: the options a user types are the ones an
operation declares, and the operations a backup host may run are the registered ones."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from typing import Any

from root_tasks import root_collection

import memops.ops
from memops.cli.operation import _operations
from memops.ops.runner import Operation
from memops.tasks.common import RUNNER_ARGUMENTS


def _tasks() -> dict[str, Any]:
    collection = root_collection()
    return {name: collection[name] for name in collection.task_names}


def _operation_of(body: Any) -> Operation | None:
    """The Operation a task runs (``operation_task(OP, …)`` records it)."""
    return getattr(body, "operation", None)


def _all_operations() -> list[Operation]:
    found = []
    for info in pkgutil.iter_modules(memops.ops.__path__, "memops.ops."):
        module = importlib.import_module(info.name)
        found += [v for v in vars(module).values() if isinstance(v, Operation)]
    return found


def test_every_task_runs_an_operation_with_exactly_its_options():
    mismatched = {}
    for name, task in _tasks().items():
        operation = _operation_of(task.body)
        assert operation is not None, f"task {name} does not run an operation"
        parameters = set(inspect.signature(task.body).parameters) - set(RUNNER_ARGUMENTS)
        parameters -= set(operation.renamed)  # old spellings, mapped before the runner
        if parameters != set(operation.options):
            mismatched[name] = sorted(parameters ^ set(operation.options))
    assert mismatched == {}


def test_every_operation_has_a_task():
    run_by_tasks = {_operation_of(task.body).name for task in _tasks().values()}
    assert {op.name for op in _all_operations()} - run_by_tasks == set()


def test_the_backup_host_registry_is_exactly_the_operations_with_a_playbook():
    remote = {op.name for op in _all_operations() if op.playbook}
    assert set(_operations()) == remote


def test_destructive_operations_take_dry_run_and_yes_and_hold_the_lock():
    for operation in _all_operations():
        if "yes" in operation.options:
            # memory.anonymize is a dry run unless --apply: the safe way round.
            previews = {"dry_run", "apply"} & set(operation.options)
            assert previews and operation.locks, operation.name


def test_an_old_option_name_still_works_for_a_release_with_a_note():
    from memops.ops.memory import REJUDGE
    from memops.tasks.common import take_renamed

    raw, notes = take_renamed(REJUDGE, {"tenant": "acme", "namespace": None, "row": None})
    assert raw == {"namespace": "acme", "row": None}
    assert notes == ["--tenant is deprecated: use --namespace"]
    raw, notes = take_renamed(REJUDGE, {"tenant": "acme", "namespace": "beta"})
    assert raw == {"namespace": "beta"} and "--tenant ignored" in notes[1]
    assert take_renamed(REJUDGE, {"tenant": None, "namespace": "beta"}) == (
        {"namespace": "beta"},
        [],
    )
