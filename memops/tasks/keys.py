"""`invoke keys.*`: the key ring of encrypted memory values and its rotation."""

from __future__ import annotations

from memops.ops.keys import INIT, RETIRE, ROTATE, STATUS
from memops.tasks.common import operation_task

init = operation_task(
    INIT, "Create the key ring (one random key, mode 0600) when there is none; never replace one."
)


status = operation_task(
    STATUS,
    "The ring's key ids, the active one, how many Redis values each seals, the last rotation.",
)


rotate = operation_task(
    ROTATE,
    "Add a new active key, then re-encrypt every sealed value under it (resumes if stopped).",
)


retire = operation_task(
    RETIRE,
    "Remove an old key from the ring; refused while a value or a retained backup set uses it.",
    positional=("key_id",),
)
