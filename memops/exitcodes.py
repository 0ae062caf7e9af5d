"""Exit codes of every memops command, for people and for scheduled jobs that branch on them.

0: done and healthy. 1: the action failed, or the stack is degraded. 2: bad input
(an option, an inventory, a file) or a failing stack; nothing was touched on bad input.
3: no verdict: the evidence is too short, stale or malformed to judge (``rollout.gate``).
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_FAILING = 2  # the health verdict "failing" shares the code of bad input
EXIT_INSUFFICIENT = 3  # no gate failed, but the history is too short, stale or malformed
