"""Action ``memops.stack.memops_sentinel``: ask the Sentinels, or set their settings, from
the controller (memops/ha/sentinel.py).

``op: primary`` returns ``known`` and the ``host``/``port`` most answering Sentinels name
primary (``answered`` false when none answers: a first deploy). ``op: settings`` runs
SENTINEL SET where a Sentinel's value differs from ``settings`` and reports ``changed``.
The password is a secret: the task that calls it is no_log.
"""

from __future__ import annotations

from typing import Any

from ansible.plugins.action import ActionBase

DOCUMENTATION = r"""
action: memops_sentinel
short_description: Ask Redis Sentinels who the primary is, or set their settings
options:
  op:
    description: primary or settings.
    required: true
  sentinels:
    description: List of {host, port} of the Sentinels.
    required: true
  master:
    description: The master name the Sentinels monitor.
    required: true
  password:
    description: The Sentinels' requirepass.
  settings:
    description: For op settings, name -> value (quorum, down-after-milliseconds, ...).
  timeout:
    description: Seconds per Sentinel.
    default: 2
"""


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False

    def run(self, tmp: Any = None, task_vars: Any = None) -> dict[str, Any]:
        from memops.ha.sentinel import SentinelEndpoint, SentinelError, primary_of, sync_settings

        result: dict[str, Any] = super().run(tmp, task_vars)
        args = self._task.args
        password = args.get("password") or None
        endpoints = [
            SentinelEndpoint(str(item["host"]), int(item["port"]), password)
            for item in args.get("sentinels") or []
        ]
        master, timeout = str(args["master"]), float(args.get("timeout") or 2)
        if args["op"] == "primary":
            try:
                address = primary_of(endpoints, master, timeout_s=timeout)
            except SentinelError as exc:
                result.update(changed=False, answered=False, known=False, message=str(exc))
                return result
            result.update(changed=False, answered=True, known=address is not None)
            if address is not None:
                result.update(host=address[0], port=address[1])
            return result
        if args["op"] == "settings":
            if self._task.check_mode:
                result.update(changed=False, skipped_in_check_mode=True)
                return result
            try:
                changed = sync_settings(
                    endpoints, master, dict(args.get("settings") or {}), timeout_s=timeout
                )
            except Exception as exc:
                result.update(failed=True, msg=f"SENTINEL SET failed: {type(exc).__name__}: {exc}")
                return result
            result.update(changed=bool(changed), sentinels_changed=changed)
            return result
        result.update(failed=True, msg=f"op: primary or settings, not {args['op']!r}")
        return result
