"""Ansible callback: write a machine-readable summary of a playbook run.

invoke reads it to print one-line errors and changed counts without parsing
Ansible's human output. The file is named by $MEMOPS_RESULT_FILE; without it
the plugin does nothing. Messages of tasks marked no_log are never recorded.
"""

from __future__ import annotations

import json
import os

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
    name: memops_summary
    type: aggregate
    short_description: write per-host stats and failures as JSON to $MEMOPS_RESULT_FILE
    description:
      - Used by memops' invoke tasks; does nothing unless MEMOPS_RESULT_FILE is set.
    requirements:
      - MEMOPS_RESULT_FILE in the environment
"""


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "memops_summary"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self) -> None:
        super().__init__()
        self._failures: list[dict[str, str]] = []
        self._changed_tasks: list[dict[str, str]] = []

    def _record_failure(self, result, kind: str) -> None:
        task = result._task
        if result._result.get("_ansible_no_log") or task.no_log:
            message = "(output hidden because the task handles secrets)"
        else:
            message = _failure_message(result._result)
        self._failures.append(
            {"host": result._host.get_name(), "task": task.get_name(), "kind": kind, "msg": message}
        )

    def v2_runner_on_failed(self, result, ignore_errors=False) -> None:
        if not ignore_errors:
            self._record_failure(result, "failed")

    def v2_runner_on_unreachable(self, result) -> None:
        self._record_failure(result, "unreachable")

    def v2_runner_on_ok(self, result) -> None:
        if result._result.get("changed"):
            self._changed_tasks.append(
                {"host": result._host.get_name(), "task": result._task.get_name()}
            )

    def v2_playbook_on_stats(self, stats) -> None:
        path = os.environ.get("MEMOPS_RESULT_FILE")
        if not path:
            return
        hosts = {host: stats.summarize(host) for host in sorted(stats.processed.keys())}
        # A failure that a block's rescue handled leaves the host's failure count at 0.
        failures = [
            failure
            for failure in self._failures
            if hosts.get(failure["host"], {}).get("failures", 1)
            or hosts.get(failure["host"], {}).get("unreachable", 1)
        ]
        summary = {
            "hosts": hosts,
            "failures": failures,
            "changed_tasks": self._changed_tasks,
            # set_stats data: how a play hands a result to invoke (e.g. the backup playbook)
            "custom": stats.custom,
        }
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(summary, handle, default=str)


def _failure_message(result: dict) -> str:
    """The most telling one-line message of a failed task result."""
    if result.get("msg") == "non-zero return code" and str(result.get("stderr", "")).strip():
        return " ".join(str(result["stderr"]).split())
    for key in ("msg", "stderr", "message"):
        value = result.get(key)
        if isinstance(value, str) and value.strip():
            return " ".join(value.split())
    results = result.get("results")
    if isinstance(results, list):
        for item in results:
            if isinstance(item, dict) and item.get("failed"):
                return _failure_message(item)
    return "task failed without a message"
