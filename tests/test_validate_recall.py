"""validate.recall against a real Redis, PostgreSQL and the Qdrant stand-in.

What these tests prove: the scripted scenario passes at the 0.95 threshold on a
healthy stack, the superseded fact is not the answer, its JSON report has the
request and answer of every case; with the semantic tier emptied the run fails
naming the semantic cases; the scenario's data is removed afterwards (and other
tenants are untouched) unless --keep; the embedder is deterministic.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from op_calls import call
from qdrant_client import models
from three_tiers import Stack

from memops.exitcodes import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK
from memops.memory import recall
from memops.memory.embedder import embed
from memops.ops.validate import RECALL

pytestmark = [
    pytest.mark.integration,
    pytest.mark.filterwarnings("ignore:Api key is used with an insecure connection"),
]


def recall_call(tier_stack: Stack, **raw: Any) -> tuple[int, dict[str, Any], str]:
    given = {"tier": None, "threshold": None, "keep": False, "skip_write": False} | raw
    return call(RECALL, tier_stack.inventory, tier_stack.capsys, **given)


def everything_else(tier_stack: Stack) -> dict[str, Any]:
    keys = sorted(k for k in tier_stack.redis.scan_iter(count=1000))
    rows = tier_stack.pg.execute("SELECT * FROM memory_items ORDER BY id").fetchall()
    return {"redis": {k: tier_stack.redis.get(k) for k in keys}, "rows": [repr(r) for r in rows]}


def test_the_scenario_passes_and_cleans_up_after_itself(tier_stack: Stack) -> None:
    before = everything_else(tier_stack)
    code, document, err = recall_call(tier_stack)
    assert code == EXIT_OK, err
    assert document["success_rate"] == 1.0 and document["coverage"] == 1.0
    assert {t: n["cases"] for t, n in document["tiers"].items()} == {
        "redis": 5,
        "postgresql": 6,
        "qdrant": 9,
    }
    deploy = next(c for c in document["cases"] if c["name"] == "episodic-deploy-old")
    assert "Thursday" in deploy["answer"]  # the superseded fact is not the answer
    report = json.loads(Path(document["report"]).read_text())
    assert report["cases"] == document["cases"]
    assert all({"request", "answer", "expect", "ok"} <= set(case) for case in report["cases"])
    assert everything_else(tier_stack) == before  # nothing of the scenario left behind
    assert not tier_stack.qdrant.collection_exists(recall.COLLECTION)


def test_an_emptied_semantic_tier_fails_the_run(tier_stack: Stack) -> None:
    code, document, err = recall_call(tier_stack, keep=True)
    assert code == EXIT_OK, err
    tier_stack.qdrant.delete(
        recall.COLLECTION,
        points_selector=models.FilterSelector(filter=models.Filter(must=[])),
        wait=True,
    )
    code, document, err = recall_call(tier_stack, skip_write=True)
    assert code == EXIT_FAILED and "under 95%" in err
    failed = {c["name"] for c in document["cases"] if not c["ok"]}
    assert failed == {c.name for c in recall.SCENARIO if c.tier == "qdrant"}
    assert document["tiers"]["qdrant"]["answered"] == 0
    assert document["coverage"] < 1.0


def test_a_bad_threshold_is_refused(tier_stack: Stack) -> None:
    code, _, err = recall_call(tier_stack, threshold="1.5")
    assert code == EXIT_BAD_INPUT and "--threshold" in err
    assert not tier_stack.qdrant.collection_exists(recall.COLLECTION)


def test_the_embedder_is_deterministic_and_separates_the_scenarios_facts() -> None:
    assert embed("Where are billing invoices stored?") == embed("where are BILLING invoices stored")
    semantic = [c for c in recall.SCENARIO if c.tier == "qdrant"]
    for case in semantic:
        question = embed(case.request)
        best = max(
            semantic, key=lambda c: sum(a * b for a, b in zip(question, embed(c.fact), strict=True))
        )
        assert best is case, case.name
