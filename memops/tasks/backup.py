"""`invoke backup.*`: take, list, verify, restore and prune backup sets of the stack."""

from __future__ import annotations

from memops.ops.backup import CREATE, LIST, PRUNE, RESTORE, VERIFY
from memops.ops.drill import DRILL
from memops.tasks.common import operation_task

create = operation_task(
    CREATE,
    "Back up every tier (or the tiers and namespaces given) into one verified set.",
    iterable=["namespace"],
)


list_ = operation_task(LIST, "List the complete backup sets, oldest first.", name="list")


verify = operation_task(
    VERIFY,
    "Check every file of a set against its manifest, and each tier's own checker.",
    positional=("set_id",),
)


restore = operation_task(
    RESTORE,
    "Verify a set, then restore it (all of it, some tiers, or some namespaces).",
    positional=("set_id",),
    iterable=["namespace"],
)


prune = operation_task(
    PRUNE,
    "Remove the sets the retention policy does not keep (never the newest verified whole one).",
)


drill = operation_task(
    DRILL, "Restore a set into scratch copies, check it and its sealed values, measure RTO and RPO."
)
