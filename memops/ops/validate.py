"""The `validate.*` operations: prove the memory stack answers what it was told.

``validate.recall`` runs the scripted scenario of ``memops.memory.recall`` against the
deployed tiers (or those given), writes a JSON report with the request and the
answer of every case into ``.state/<inventory>/recall/``, and exits 1 when the
success rate is under ``--threshold``. Its data lives under a reserved tenant and
collection and is removed afterwards unless ``--keep``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from memops.exitcodes import EXIT_FAILED, EXIT_OK
from memops.files import write_private_atomic
from memops.memory import recall
from memops.ops import options
from memops.ops.rebuild import open_clients, run_guarded, scope_of
from memops.ops.runner import Context, Operation, Outcome

REPORT_DIR = "recall"


def recall_check(
    context: Context, *, tier: Sequence[str], threshold: float, keep: bool, skip_write: bool
) -> Outcome:
    inventory = context.require_inventory()

    def body() -> Outcome:
        scope = scope_of(inventory, tier)
        with open_clients(scope) as clients:
            stores = recall.Stores(clients.redis, scope.prefix, clients.postgresql, clients.qdrant)
            try:
                if not skip_write:
                    recall.write_scenario(stores)
                report = recall.ask_scenario(stores)
            finally:
                if not keep:
                    recall.clear_scenario(stores)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        path = inventory.state_dir / REPORT_DIR / f"recall-{stamp}.json"
        document: dict[str, Any] = {
            "ok": report.success_rate >= threshold,
            "threshold": threshold,
            "tenant": recall.TENANT,
            **report.to_dict(),
            "report": str(path),
        }
        write_private_atomic(path, json.dumps(document, indent=2, ensure_ascii=False) + "\n")
        return _outcome(report, document, threshold)

    return run_guarded(recall.TENANT, body)


def _outcome(report: recall.RecallReport, document: dict[str, Any], threshold: float) -> Outcome:
    lines = [
        f"recall: {report.success_rate:.1%} of {len(report.results)} case(s) answered right "
        f"(threshold {threshold:.0%}), coverage {report.coverage:.1%}",
        *(
            f"  {tier:<11} {n['ok']:>3}/{n['cases']:<3} right, {n['answered']} answered"
            for tier, n in report.by_tier().items()
        ),
        *(
            f"  FAILED {r.case.name} ({r.case.tier}): asked {r.case.request!r}, "
            f"expected {' '.join(r.case.expect)!r}, got {r.answer!r}"
            for r in report.results
            if not r.ok
        ),
        f"  report: {document['report']}",
    ]
    notes = [f"tier {t} is not deployed: its cases were not run" for t in report.skipped_tiers]
    ok = document["ok"]
    error = "" if ok else f"recall success {report.success_rate:.1%} is under {threshold:.0%}"
    return Outcome(
        EXIT_OK if ok else EXIT_FAILED,
        document,
        lines=lines,
        notes=notes,
        error=error,
        audit={"success_rate": document["success_rate"], "threshold": threshold},
    )


RECALL = Operation(
    "validate.recall",
    recall_check,
    {
        "tier": options.TIERS,
        "threshold": options.described(
            options.number(default=recall.DEFAULT_THRESHOLD, greater_than=0.0, at_most=1.0),
            f"exit 1 under this success rate (default {recall.DEFAULT_THRESHOLD:g})",
        ),
        "keep": options.described(
            options.flag(), "leave the scenario's facts in place (namespace memops-recall-check)"
        ),
        "skip_write": options.described(
            options.flag(), "ask only: answer from facts a previous --keep run left"
        ),
    },
    playbook="rebuild",
)
