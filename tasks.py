"""Invoke entry point: the root collection of the tasks memops users type.

Root tasks live in memops/tasks/stack.py; each namespace (backup, rebuild, keys,
memory, validate, rollout) is a module in memops/tasks/ added here as a
sub-collection. Every task is a thin call into memops.ops through one runner.
"""

from __future__ import annotations

from invoke import Collection

from memops.tasks import backup, keys, lab, memory, rebuild, rollout, validate
from memops.tasks.common import CONFIG_DEFAULTS
from memops.tasks.stack import ROOT_TASKS

ns = Collection()
for root_task in ROOT_TASKS:
    ns.add_task(root_task)
ns.add_collection(Collection.from_module(backup, name="backup"))
ns.add_collection(Collection.from_module(memory, name="memory"))
ns.add_collection(Collection.from_module(rebuild, name="rebuild"))
ns.add_collection(Collection.from_module(rollout, name="rollout"))
ns.add_collection(Collection.from_module(validate, name="validate"))
ns.add_collection(Collection.from_module(keys, name="keys"))
ns.add_collection(Collection.from_module(lab, name="lab"))
ns.configure(CONFIG_DEFAULTS)
