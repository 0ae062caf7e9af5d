"""The fault suite: destructive procedures killed (SIGKILL) between the steps that change data.

Against the scratch stack of all three tiers (tests/three_tiers.py), each procedure runs
as the real `invoke` in its own process with ``MEMOPS_KILL_AT`` naming the fault point
where it kills itself (memops/faults.py). After each kill:

- every tenant the procedure was not asked to touch is byte-identical in every tier
  (Redis DUMP payloads and absolute expiries, PostgreSQL rows, Qdrant points);
- the target is, tier by tier, as it was or as intended (key by key during a Redis copy);
- the next locked action names the killed one (and what it recorded);
- running the same command again finishes the job.

Also: a full backup filesystem, PostgreSQL stopped during a namespace restore, and two
destructive tasks started at the same moment. docs/fault-suite.md has the table.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from qdrant_client import models
from three_tiers import COLLECTIONS, Stack

from memops.deploy.targets_file import merge_targets
from memops.faults import KILL_ENV
from memops.ops.inflight import INFLIGHT_FILE
from memops.testing import workload as wl
from memops.testing.pgcluster import ScratchCluster

pytestmark = [
    pytest.mark.integration,
    pytest.mark.filterwarnings("ignore:Api key is used with an insecure connection"),
]

REPO = Path(__file__).resolve().parents[1]
KILLED = -9
LATE_KEYS = 1200  # written after the set: a whole restore unlinks them in 3 batches

Snapshot = dict[str, dict[str, Any]]  # tenant ("" for keys of no tenant) -> tier -> items


@pytest.fixture
def stack(tier_stack: Stack, tiers_cluster: ScratchCluster) -> Iterator[Stack]:
    """The scratch stack, recorded with the superuser socket a whole restore swaps through."""
    admin = {"socket_dir": str(tiers_cluster.socket_dir), "port": tiers_cluster.port}
    deployment = {"postgresql": {"app_user": tiers_cluster.app_role, **admin}}
    merge_targets(tier_stack.state, "inv", {}, deployment)
    tier_stack.cluster = tiers_cluster  # type: ignore[attr-defined]
    yield tier_stack


def command(
    stack: Stack, *argv: str, kill_at: str = "", env: dict[str, str] | None = None
) -> tuple[list[str], dict[str, str]]:
    """The real `invoke <argv> --inventory …`: its command line and environment."""
    environ = {**os.environ, "PYTHONPATH": str(REPO), "MEMOPS_STATE_DIR": str(stack.state)}
    environ.pop(KILL_ENV, None)
    if kill_at:
        environ[KILL_ENV] = kill_at
    environ |= env or {}
    line = [sys.executable, "-m", "invoke", argv[0], "--inventory", str(stack.inventory)]
    return [*line, *argv[1:]], environ


def invoke(
    stack: Stack, *argv: str, kill_at: str = "", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """The real `invoke <argv> --inventory …` in its own process; killed at ``kill_at``."""
    line, environ = command(stack, *argv, kill_at=kill_at, env=env)
    return subprocess.run(
        line,
        cwd=REPO,
        env=environ,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def start(stack: Stack, *argv: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """The same, started in the background, its stdout and stderr piped."""
    line, environ = command(stack, *argv, env=env)
    return subprocess.Popen(
        line,
        cwd=REPO,
        env=environ,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def invoke_json(stack: Stack, *argv: str) -> dict[str, Any]:
    run = invoke(stack, *argv, "--json")
    assert run.returncode == 0, run.stderr
    return dict(json.loads(run.stdout))


def whole_set(stack: Stack) -> str:
    return str(invoke_json(stack, "backup.create")["set_id"])


def namespace_set(stack: Stack, tenant: str) -> str:
    return str(invoke_json(stack, "backup.create", "--namespace", tenant)["set_id"])


def snapshot(stack: Stack) -> Snapshot:
    """Every tier of every tenant, read afresh (a whole restore swaps the database)."""
    found: Snapshot = {t: {"redis": {}, "rows": {}, "points": {}} for t in stack.load.tenants}
    found[""] = {"redis": {}, "rows": {}, "points": {}}
    for key in stack.redis.scan_iter(count=1000):
        owner = next(
            (
                t
                for t in stack.load.tenants
                if wl.key_in_namespace(key.decode(), stack.load.prefix, t)
            ),
            "",
        )
        found[owner]["redis"][key] = (stack.redis.dump(key), stack.redis.pexpiretime(key))
    cluster: ScratchCluster = stack.cluster  # type: ignore[attr-defined]
    with cluster.admin(stack.pg.info.dbname) as conn:
        for row in conn.execute("SELECT * FROM memory_items ORDER BY id").fetchall():
            tenant = row[1] if row[1] in found else ""
            found[tenant]["rows"][str(row[0])] = repr(row)  # repr: NaN equals NaN
    for name in COLLECTIONS:
        records, _ = stack.qdrant.scroll(name, limit=10_000, with_payload=True, with_vectors=True)
        for record in records:
            tenant = str((record.payload or {}).get("tenant_id"))
            tenant = tenant if tenant in found else ""
            found[tenant]["points"][(name, str(record.id))] = (record.payload, record.vector)
    return found


def tier(snap: Snapshot, name: str, tenants: list[str] | None = None) -> dict[Any, Any]:
    """One tier of the snapshot, over ``tenants`` (all, and keys of no tenant, by default)."""
    chosen = list(snap) if tenants is None else tenants
    return {item: value for t in chosen for item, value in snap[t][name].items()}


def change_everything(stack: Stack) -> None:
    """After a set: every tier of every tenant changes, and keys the set never held appear."""
    for tenant in stack.load.tenants:
        key = next(e.key for e in stack.load.redis if e.tenant == tenant)
        stack.redis.set(key, f"changed after the set ({tenant})", keepttl=True)
    stack.redis.mset({f"late:{n}": "not in the set" for n in range(LATE_KEYS)})
    cluster: ScratchCluster = stack.cluster  # type: ignore[attr-defined]
    with cluster.admin(stack.pg.info.dbname) as conn:
        conn.execute("UPDATE memory_items SET content = content || ' (changed)'")
    for name in COLLECTIONS:
        records, _ = stack.qdrant.scroll(name, limit=2)
        if records:
            ids = [record.id for record in records]
            stack.qdrant.delete(name, points_selector=models.PointIdsList(points=ids))


def assert_names_the_killed(run: subprocess.CompletedProcess[str], action: str) -> None:
    assert run.returncode == 0, run.stderr
    assert "did not finish" in run.stderr and action in run.stderr, run.stderr


# -- whole restore ------------------------------------------------------------------------

# fault point -> the state each tier is left in: "before", "intended" or "mixed" (Redis
# during its copy: each key one or the other, both sets of keys side by side)
WHOLE_RESTORE_POINTS = {
    "redis.restore.batch": {"redis": "mixed", "rows": "before", "points": "before"},
    "redis.unlink": {"redis": "mixed", "rows": "before", "points": "before"},
    "postgresql.loaded": {"redis": "intended", "rows": "before", "points": "before"},
    "postgresql.swapped": {"redis": "intended", "rows": "intended", "points": "before"},
}


@pytest.mark.parametrize("point", list(WHOLE_RESTORE_POINTS))
def test_a_killed_whole_restore_leaves_each_tier_before_or_intended_and_a_rerun_finishes(
    stack: Stack, point: str
) -> None:
    set_id = whole_set(stack)
    intended = snapshot(stack)
    change_everything(stack)
    before = snapshot(stack)

    killed = invoke(stack, "backup.restore", set_id, "--yes", kill_at=point)
    assert killed.returncode == KILLED, killed.stderr
    after = snapshot(stack)
    for name, state in WHOLE_RESTORE_POINTS[point].items():
        if state == "mixed":
            now, old, new = tier(after, name), tier(before, name), tier(intended, name)
            assert set(now) <= set(old) | set(new)
            assert all(value in (old.get(key), new.get(key)) for key, value in now.items())
            assert now != old, "killed before the copy began"
        else:
            assert tier(after, name) == tier({"before": before, "intended": intended}[state], name)
    assert (stack.state / INFLIGHT_FILE).exists()

    again = invoke(stack, "backup.restore", set_id, "--yes")
    assert_names_the_killed(again, "backup.restore")
    assert snapshot(stack) == intended


# -- namespace restore, rebuild.hard ------------------------------------------------------


def namespace_scenario(stack: Stack) -> tuple[str, str, str, Snapshot, Snapshot]:
    """A namespace set of the first tenant, then every tier of every tenant changed:
    target, other tenant, set id, the snapshot the set holds, the snapshot before."""
    target, other = stack.load.tenants[:2]
    set_id = namespace_set(stack, target)
    intended = snapshot(stack)
    change_everything(stack)
    return target, other, set_id, intended, snapshot(stack)


def test_a_killed_namespace_restore_touches_no_other_tenant_and_a_rerun_finishes(
    stack: Stack,
) -> None:
    target, other, set_id, intended, before = namespace_scenario(stack)

    argv = ("backup.restore", set_id, "--namespace", target, "--yes")
    killed = invoke(stack, *argv, kill_at="restore.tier")  # after its first tier, Redis
    assert killed.returncode == KILLED, killed.stderr
    after = snapshot(stack)
    assert after[other] == before[other] and after[""] == before[""]
    assert after[target]["redis"] == intended[target]["redis"]
    assert after[target]["rows"] == before[target]["rows"]
    assert after[target]["points"] == before[target]["points"]

    again = invoke(stack, *argv)
    assert_names_the_killed(again, "backup.restore")
    done = snapshot(stack)
    assert done[target] == intended[target]
    assert done[other] == before[other] and done[""] == before[""]


def test_a_hard_rebuild_killed_after_its_clear_names_its_safety_set_and_a_rerun_finishes(
    stack: Stack,
) -> None:
    target, other, set_id, intended, before = namespace_scenario(stack)

    argv = ("rebuild.hard", "--namespace", target, "--from-backup", set_id, "--yes")
    killed = invoke(stack, *argv, kill_at="rebuild.hard.cleared")
    assert killed.returncode == KILLED, killed.stderr
    after = snapshot(stack)
    assert after[other] == before[other] and after[""] == before[""]
    assert after[target]["redis"] == {}  # cleared: neither before nor intended, so recorded
    assert after[target]["rows"] == before[target]["rows"]
    record = json.loads((stack.state / INFLIGHT_FILE).read_text())
    [recovery] = record["recovery"]
    assert "safety backup" in recovery and "invoke backup.restore" in recovery
    audit = [json.loads(line) for line in (stack.state / "audit.jsonl").read_text().splitlines()]
    assert any(a["result"] == "in-progress" and a["action"] == "rebuild.hard" for a in audit)

    again = invoke(stack, *argv)
    assert_names_the_killed(again, "rebuild.hard")
    assert "safety backup" in again.stderr  # what the killed one recorded
    done = snapshot(stack)
    assert done[target] == intended[target]
    assert done[other] == before[other] and done[""] == before[""]


# -- quarantine and release ----------------------------------------------------------------


def _hidden_from_the_application(stack: Stack, tenant: str) -> dict[str, bool]:
    """Per tier, whether the application no longer sees the tenant (PostgreSQL rows through
    row security, Qdrant points in the shared collections)."""
    cluster: ScratchCluster = stack.cluster  # type: ignore[attr-defined]
    with cluster.connect(stack.pg.info.dbname) as app:
        rows = app.execute(
            "SELECT count(*) FROM memory_items WHERE tenant_id = %s", (tenant,)
        ).fetchone()[0]
    shared = sum(
        stack.qdrant.count(name, count_filter=tenant_filter(tenant)).count for name in COLLECTIONS
    )
    return {"postgresql": rows == 0, "qdrant": shared == 0}


def tenant_filter(tenant: str) -> models.Filter:
    match = models.MatchValue(value=tenant)
    return models.Filter(must=[models.FieldCondition(key="tenant_id", match=match)])


@pytest.mark.parametrize("action", ["rebuild.quarantine", "rebuild.release"])
def test_a_quarantine_or_release_killed_between_tiers_is_finished_by_a_rerun(
    stack: Stack, action: str
) -> None:
    target, other = stack.load.tenants[:2]
    before = snapshot(stack)
    quarantine = ("rebuild.quarantine", target, "--tier", "postgresql,qdrant", "--yes")
    if action == "rebuild.release":
        assert invoke(stack, *quarantine).returncode == 0
    argv = (action, target, "--tier", "postgresql,qdrant", "--yes")
    point = "quarantine.tier" if action == "rebuild.quarantine" else "release.tier"

    killed = invoke(stack, *argv, kill_at=point)  # after its first tier, PostgreSQL
    assert killed.returncode == KILLED, killed.stderr
    after = snapshot(stack)
    assert after[other] == before[other] and after[""] == before[""]
    hidden = _hidden_from_the_application(stack, target)
    quarantining = action == "rebuild.quarantine"
    assert hidden == {"postgresql": quarantining, "qdrant": not quarantining}
    health = invoke(stack, "health", "--json")
    assert health.returncode == 1, health.stdout  # degraded: a tier is still open
    partial = "quarantine_partial" if quarantining else "release_partial"
    assert partial in health.stdout

    again = invoke(stack, *argv)
    assert_names_the_killed(again, action)
    hidden = _hidden_from_the_application(stack, target)
    assert hidden == {"postgresql": quarantining, "qdrant": quarantining}
    done = snapshot(stack)
    assert done[other] == before[other] and done[""] == before[""]
    if not quarantining:
        assert done == before  # released: exactly the data of before


# -- other faults -------------------------------------------------------------------------


def test_postgresql_stopped_during_a_namespace_restore(stack: Stack) -> None:
    target, other, set_id, intended, before = namespace_scenario(stack)
    cluster: ScratchCluster = stack.cluster  # type: ignore[attr-defined]
    argv = ("backup.restore", set_id, "--namespace", target, "--yes")
    cluster.stop()
    try:
        stopped = invoke(stack, *argv, "--json")
    finally:
        cluster.start()
    assert stopped.returncode == 1
    assert len(stopped.stderr.strip().splitlines()) == 1, stopped.stderr
    assert json.loads(stopped.stdout)["tier_states"] == {
        "redis": "restored",
        "postgresql": "failed",
        "qdrant": "not restored",
    }
    after = snapshot(stack)
    assert after[other] == before[other] and after[target]["rows"] == before[target]["rows"]

    again = invoke(stack, *argv)
    assert again.returncode == 0, again.stderr
    done = snapshot(stack)
    assert done[target] == intended[target] and done[other] == before[other]


def test_a_full_backup_filesystem_fails_in_one_line_and_leaves_no_set(
    stack: Stack, tmp_path: Path
) -> None:
    full = tmp_path / "full"
    full.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=96k,mode=0700", "tmpfs", str(full)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.strip()}")
    try:
        (stack.inventory / "group_vars" / "all.yml").write_text(f"backup_local_dir: {full}\n")
        before = snapshot(stack)
        run = invoke(stack, "backup.create", "--json")  # --json: no progress lines
        assert run.returncode != 0
        assert len(run.stderr.strip().splitlines()) == 1, run.stderr
        assert "space" in run.stderr.lower(), run.stderr
        assert invoke_json(stack, "backup.list")["sets"] == []
        assert snapshot(stack) == before
        pruned = invoke(stack, "backup.prune", "--yes")
        assert pruned.returncode == 0, pruned.stderr
        assert [p.name for p in full.iterdir() if not p.name.startswith(".")] == []
    finally:
        subprocess.run(["umount", str(full)], check=False)


def test_two_destructive_tasks_at_the_same_moment(stack: Stack) -> None:
    """One runs, the other is refused in one line before it touches anything."""
    set_id = whole_set(stack)
    intended = snapshot(stack)
    change_everything(stack)
    both = [start(stack, "backup.restore", set_id, "--yes") for _ in range(2)]
    results = [(p.wait(timeout=300), p.stderr.read() if p.stderr else "") for p in both]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results
    refused = next(err for code, err in results if code == 2)
    assert "another memops action holds" in refused and len(refused.strip().splitlines()) == 1
    assert snapshot(stack) == intended


def test_no_fault_point_is_left_armed_in_a_normal_run(stack: Stack) -> None:
    """Without MEMOPS_KILL_AT the points do nothing (the runs above would otherwise die)."""
    assert KILL_ENV not in os.environ
    set_id = whole_set(stack)
    run = invoke(stack, "backup.restore", set_id, "--yes")
    assert run.returncode == 0, run.stderr
    assert not (stack.state / INFLIGHT_FILE).exists()
    with psycopg.connect(**stack.cluster.app_params(stack.pg.info.dbname)) as conn:  # type: ignore[attr-defined]
        assert conn.execute("SELECT 1").fetchone() == (1,)
