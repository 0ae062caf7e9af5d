"""A whole restore of several tiers that fails in one says which tiers hold the set.

Against the scratch stack of all three tiers: a whole set is taken, every tier then
changes, and PostgreSQL is stopped. The restore puts Redis back, fails in
PostgreSQL, never touches Qdrant, and says exactly that (table, --json, audit line,
exit 1). With PostgreSQL back, the same restore finishes the job.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from op_calls import call
from qdrant_client import models
from three_tiers import COLLECTIONS, Stack

from memops.audit import AUDIT_FILE
from memops.deploy.targets_file import merge_targets
from memops.exitcodes import EXIT_FAILED, EXIT_OK
from memops.ops.backup import CREATE, RESTORE
from memops.testing import workload as wl
from memops.testing.pgcluster import ScratchCluster

pytestmark = [
    pytest.mark.integration,
    pytest.mark.filterwarnings("ignore:Api key is used with an insecure connection"),
]


def _qdrant(stack: Stack) -> dict[str, Any]:
    return {name: wl.read_qdrant(stack.qdrant, name, stack.load.tenants) for name in COLLECTIONS}


def _redis(stack: Stack) -> dict[bytes, bytes]:
    return {key: stack.redis.dump(key) for key in stack.redis.scan_iter()}


def test_a_restore_that_fails_in_one_tier_names_what_it_restored(
    tier_stack: Stack, tiers_cluster: ScratchCluster
) -> None:
    stack, cluster = tier_stack, tiers_cluster
    # a whole restore creates and swaps databases as the cluster's superuser (socket)
    admin = {"socket_dir": str(cluster.socket_dir), "port": cluster.port}
    merge_targets(stack.state, "inv", {}, {"postgresql": {"app_user": cluster.app_role, **admin}})
    code, made, err = call(
        CREATE, stack.inventory, stack.capsys, tier=None, namespace=[], target=None
    )
    assert code == EXIT_OK, err
    set_id = made["set_id"]
    redis_in_set, qdrant_in_set = _redis(stack), _qdrant(stack)
    stack.redis.set("written:after-the-set", "gone after the restore")
    lost = [str(point_id) for point_id in qdrant_in_set[COLLECTIONS[0]]][:3]
    stack.qdrant.delete(COLLECTIONS[0], points_selector=models.PointIdsList(points=lost))
    qdrant_changed = _qdrant(stack)
    assert qdrant_changed != qdrant_in_set

    cluster.stop()
    try:
        raw = {"tier": None, "namespace": [], "target": None, "dry_run": False, "yes": True}
        code, document, err = call(RESTORE, stack.inventory, stack.capsys, set_id=set_id, **raw)
    finally:
        cluster.start()
    assert code == EXIT_FAILED, document
    assert document["tier_states"] == {
        "redis": "restored",
        "postgresql": "failed",
        "qdrant": "not restored",
    }
    assert "restored: redis" in err and "not restored: qdrant" in err
    assert _redis(stack) == redis_in_set  # Redis holds the set
    assert _qdrant(stack) == qdrant_changed  # Qdrant was not touched
    audit = (stack.state / AUDIT_FILE).read_text().splitlines()
    last = json.loads(audit[-1])
    assert last["action"] == "backup.restore" and last["result"] == "partial"

    code, document, err = call(RESTORE, stack.inventory, stack.capsys, set_id=set_id, **raw)
    assert code == EXIT_OK, err
    assert _qdrant(stack) == qdrant_in_set
    assert _redis(stack) == redis_in_set
