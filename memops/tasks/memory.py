"""`invoke memory.*`: supersede-lifecycle procedures on episodic memory (PostgreSQL)."""

from __future__ import annotations

from memops.ops.memory import ANONYMIZE, CHAIN, REJUDGE
from memops.tasks.common import operation_task

rejudge = operation_task(
    REJUDGE, "Put live facts back into the judge queue (judge_at = NULL): one row or a namespace."
)


chain = operation_task(
    CHAIN,
    "Walk a supersede chain backwards from a row: what it replaced, newest first.",
    positional=("row",),
)


anonymize = operation_task(
    ANONYMIZE, "Redact rows past retention (soft-deleted, superseded); a dry run unless --apply."
)
