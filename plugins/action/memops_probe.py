"""Action ``memops.stack.memops_probe``: a component's closing health probe, run in the
controller's process.

The same probe as `python -m memops probe KIND --require-healthy` (memops/cli/probe.py,
``probe_outcome``), without a new interpreter per probe: a deploy probes every component,
and starting Python and importing the client libraries cost most of a second each time.
It never fails the task itself: it returns ``rc`` (0 healthy, 1 not, 2 bad target) and
``stderr`` (one line), and roles/memops_service/tasks/probe.yml decides. The target may
hold a secret: the task that calls it is no_log.
"""

from __future__ import annotations

import json
from typing import Any

from ansible.plugins.action import ActionBase

DOCUMENTATION = r"""
action: memops_probe
short_description: Probe a memops component from the controller
options:
  kind:
    description: redis, postgresql, qdrant or http.
    required: true
  target:
    description: The component's health target (what targets.json records).
    required: true
  timeout:
    description: Seconds per attempt; 0 = the probes' default (memops.probes.DEFAULT_TIMEOUT_S).
    default: 0
  retries:
    description: Retries of a failed probe.
    default: 1
  wait:
    description: Keep re-probing until healthy or this many seconds have passed.
    default: 0
"""


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False

    def run(self, tmp: Any = None, task_vars: Any = None) -> dict[str, Any]:
        from memops.cli.probe import probe_outcome
        from memops.probes import DEFAULT_TIMEOUT_S

        result: dict[str, Any] = super().run(tmp, task_vars)
        args = self._task.args
        timeout = float(args.get("timeout") or 0) or DEFAULT_TIMEOUT_S
        code, document, message = probe_outcome(
            str(args["kind"]),
            args.get("target"),
            timeout_s=timeout,
            retries=int(args.get("retries", 1)),
            wait_s=float(args.get("wait") or 0),
            require_healthy=True,
        )
        result.update(changed=False, rc=code, stdout=json.dumps(document), stderr=message)
        return result
