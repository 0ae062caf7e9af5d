"""`invoke rebuild.*`: the memory rebuild runbook, one namespace at a time.

validate, soft, hard and reindex are here; quarantine and release live in quarantine.py
and join the collection through the import below.
"""

from __future__ import annotations

from memops.ops.rebuild import HARD, REINDEX, SOFT, VALIDATE
from memops.tasks.common import operation_task
from memops.tasks.quarantine import quarantine, release

__all__ = ["hard", "quarantine", "reindex", "release", "soft", "validate"]


validate = operation_task(
    VALIDATE,
    "Check every entry of a namespace: good / corrupt / undecryptable / orphaned per tier.",
    positional=("namespace",),
)


soft = operation_task(
    SOFT,
    "Back the namespace up, then remove only the entries that fail validation.",
    positional=("namespace",),
)


hard = operation_task(
    HARD,
    "Back the namespace up, clear it, restore it from a set, validate it and probe.",
    positional=("namespace",),
)


reindex = operation_task(
    REINDEX,
    "Rebuild the namespace's Qdrant points from the embeddings kept in memory_items.",
    positional=("namespace",),
)
