"""`invoke lab.*`: container hosts on this machine to try the staging shape on."""

from __future__ import annotations

from memops.ops.lab import LAB_DOWN, LAB_STATUS, LAB_UP
from memops.tasks.common import operation_task

up = operation_task(
    LAB_UP,
    "Start container hosts (systemd, sshd) and write an inventory of the staging shape for them.",
    runner_options=("json",),
)

status = operation_task(
    LAB_STATUS, "Show the lab's hosts and whether each runs.", runner_options=("json",)
)

down = operation_task(
    LAB_DOWN,
    "Remove the lab's containers, network, inventory and files; stop what it started.",
    runner_options=("json",),
)
