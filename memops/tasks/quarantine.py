"""`invoke rebuild.quarantine` / `rebuild.release` (added to the rebuild collection)."""

from __future__ import annotations

from memops.ops.quarantine import QUARANTINE, RELEASE
from memops.tasks.common import operation_task

quarantine = operation_task(
    QUARANTINE,
    "Cut the application's credentials off a namespace in every tier; no data is touched.",
    positional=("namespace",),
)


release = operation_task(
    RELEASE,
    "Give the application its access to a quarantined namespace back, exactly as before.",
    positional=("namespace",),
)
