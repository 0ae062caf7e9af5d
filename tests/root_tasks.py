"""Load the project's tasks.py the way `invoke` does, for tests that inspect the task tree."""

from __future__ import annotations

import importlib.util
from types import ModuleType

from invoke import Collection

from memops.paths import PROJECT_DIR


def load_tasks_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("memops_root_tasks", PROJECT_DIR / "tasks.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def root_collection() -> Collection:
    collection = load_tasks_module().ns
    assert isinstance(collection, Collection)
    return collection
