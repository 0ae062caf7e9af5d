"""`invoke rebuild.*`: the memory rebuild runbook, namespace by namespace.

Each procedure's tasks live in their own module (rebuild_quarantine, ...); this one
gathers them into the `rebuild` collection.
"""

from __future__ import annotations

from memops.tasks.rebuild_quarantine import quarantine, release

__all__ = ["quarantine", "release"]
