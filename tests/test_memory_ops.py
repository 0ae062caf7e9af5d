"""The memory.* operations (supersede lifecycle) against a real scratch PostgreSQL.

Data comes from the workload generator, hostile tenant names included. What
these tests prove: rejudge changes exactly the rows it names (one row, or a
tenant's live facts) and writes its audit row in the same transaction; another
tenant's row id, a dead row or a bad id changes nothing and says so; the chain
walk returns the generator's chain in order, stops on a hand-made cycle and at
the depth limit.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from op_calls import call

from memops import supersede
from memops import workload as wl
from memops.exitcodes import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK
from memops.migrate import migrate
from memops.ops.memory import CHAIN, REJUDGE
from memops.ops.runner import Operation, run_operation
from memops.pgcluster import ClusterUnavailable, ScratchCluster, scratch_cluster
from memops.targets_file import merge_targets

pytestmark = pytest.mark.integration

HOSTILE = "'; DROP TABLE memory_items; --"


@pytest.fixture(scope="module")
def cluster() -> Iterator[ScratchCluster]:
    try:
        with scratch_cluster("memops_memtest", 37506, app_role="memtest", db_prefix="mem") as c:
            yield c
    except ClusterUnavailable as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def load() -> wl.Workload:
    return wl.generate(seed=5150, tenants=2, items_per_tenant=8)


@pytest.fixture
def dbname(cluster: ScratchCluster, load: wl.Workload) -> str:
    name = cluster.new_database()
    with cluster.connect(name, autocommit=True) as conn:
        migrate(conn)
        wl.write_postgres(conn, load)
    return name


@pytest.fixture
def conn(cluster: ScratchCluster, dbname: str) -> Iterator[psycopg.Connection[Any]]:
    with cluster.connect(dbname, autocommit=True) as connection:
        yield connection


@dataclass
class Stack:
    """The scratch database as the tests see it: through the runner, and directly."""

    inventory: Path
    conn: psycopg.Connection[Any]
    load: wl.Workload
    capsys: pytest.CaptureFixture[str]

    def call(self, operation: Operation, **raw: Any) -> tuple[int, dict[str, Any], str]:
        return call(operation, self.inventory, self.capsys, **raw)


@pytest.fixture
def stack(
    inventory: Path,
    conn: psycopg.Connection[Any],
    load: wl.Workload,
    capsys: pytest.CaptureFixture[str],
) -> Stack:
    return Stack(inventory, conn, load, capsys)


@pytest.fixture
def inventory(
    tmp_path: Path, cluster: ScratchCluster, dbname: str, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """An inventory whose state directory records only the scratch database."""
    root = tmp_path / "inv"
    (root / "group_vars").mkdir(parents=True)
    (root / "hosts.yml").write_text("all:\n  hosts:\n    localhost:\n")
    (root / "group_vars" / "all.yml").write_text("{}\n")
    state = tmp_path / "state"
    monkeypatch.setenv("MEMOPS_STATE_DIR", str(state))
    component = {"kind": "postgresql", **cluster.app_params(dbname)}
    merge_targets(state, "inv", {"postgresql": component}, {})
    return root


def table(conn: psycopg.Connection[Any]) -> dict[str, tuple[Any, ...]]:
    rows = conn.execute("SELECT * FROM memory_items ORDER BY id").fetchall()
    return {str(row[0]): tuple(row) for row in rows}


def audit_rows(conn: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
    return conn.execute(
        "SELECT actor, action, tenant_id, details FROM execution_audit_log ORDER BY id"
    ).fetchall()


def requeueable(load: wl.Workload, tenant: str) -> set[str]:
    return {
        i.id
        for i in load.items_of(tenant)
        if i.source_kind == wl.FACT
        and i.superseded_by is None
        and i.deleted_at is None
        and i.judge_at is not None
    }


def tenant_with_facts(load: wl.Workload, *, at_least: int = 1) -> str:
    return next(t for t in load.tenants if len(requeueable(load, t)) >= at_least)


def rejudge_raw(tenant: str, row: str | None = None, **given: Any) -> dict[str, Any]:
    return {"tenant": tenant, "row": row, "dry_run": False, "yes": True} | given


JUDGE_AT = 8  # column position of judge_at in memory_items


def only_judge_at_cleared(
    before: dict[str, tuple[Any, ...]], after: dict[str, tuple[Any, ...]], ids: set[str]
) -> None:
    assert after.keys() == before.keys()
    for row_id, row in before.items():
        if row_id in ids:
            expected = (*row[:JUDGE_AT], None, *row[JUDGE_AT + 1 :])
            assert after[row_id] == expected, row_id
        else:
            assert after[row_id] == row, row_id


# -- rejudge ---------------------------------------------------------------------------


def test_rejudge_one_row_changes_only_that_row(stack: Stack) -> None:
    tenant = HOSTILE if requeueable(stack.load, HOSTILE) else tenant_with_facts(stack.load)
    row = sorted(requeueable(stack.load, tenant))[0]
    before = table(stack.conn)
    code, done, err = stack.call(REJUDGE, **rejudge_raw(tenant, row))
    assert code == EXIT_OK, err
    assert done["changed"] == 1 and done["reason"] == supersede.ROW_LIVE_FACT
    only_judge_at_cleared(before, table(stack.conn), {row})
    (audit,) = audit_rows(stack.conn)
    assert audit[1:] == ("memory.rejudge", tenant, {"count": 1, "row": row})
    assert "@" in audit[0]


def test_rejudge_a_tenant_changes_exactly_its_live_facts(stack: Stack) -> None:
    tenant = tenant_with_facts(stack.load, at_least=2)
    expected = requeueable(stack.load, tenant)
    before = table(stack.conn)
    code, done, err = stack.call(REJUDGE, **rejudge_raw(tenant))
    assert code == EXIT_OK, err
    assert done["changed"] == len(expected)
    only_judge_at_cleared(before, table(stack.conn), expected)
    assert [a[2:] for a in audit_rows(stack.conn)] == [(tenant, {"count": len(expected)})]

    # A second run finds nothing left to queue: 0 changed, no confirmation, no audit row.
    code, again, _ = stack.call(REJUDGE, **rejudge_raw(tenant, yes=False))
    assert code == EXIT_OK and again["changed"] == 0
    assert len(audit_rows(stack.conn)) == 1


def test_hostile_tenant_names_are_literals(stack: Stack) -> None:
    """'percent%_like' and 'glob*star' name exactly themselves; the SQL tenant breaks nothing."""
    before = table(stack.conn)
    for tenant in ("percent%_like", "glob*star", HOSTILE, "acme"):
        code, done, err = stack.call(REJUDGE, **rejudge_raw(tenant, dry_run=True))
        assert code == EXIT_OK, err
        assert done["count"] == len(requeueable(stack.load, tenant))
    assert table(stack.conn) == before


def test_another_tenants_row_changes_nothing_and_says_so(stack: Stack) -> None:
    owner = tenant_with_facts(stack.load)
    row = sorted(requeueable(stack.load, owner))[0]
    asker = "acme:eu" if owner != "acme:eu" else "acme"
    before = table(stack.conn)
    code, refused, err = stack.call(REJUDGE, **rejudge_raw(asker, row))
    assert code == EXIT_BAD_INPUT
    assert refused["changed"] == 0
    assert "belongs to another tenant" in err and "nothing changed" in err
    assert repr(owner) not in err and repr(owner) not in json.dumps(refused)
    assert len(err.splitlines()) == 1
    assert table(stack.conn) == before
    assert audit_rows(stack.conn) == []


def _pick(load: wl.Workload, reason: str) -> tuple[str, str]:
    def fits(item: wl.MemoryItem) -> bool:
        if reason == supersede.ROW_SUPERSEDED:
            return item.superseded_by is not None
        if reason == supersede.ROW_DELETED:
            return item.source_kind == wl.FACT and not item.superseded_by and bool(item.deleted_at)
        return item.source_kind != wl.FACT  # ROW_NOT_FACT

    item = next(i for i in load.memory_items if fits(i))
    return item.tenant_id, item.id


@pytest.mark.parametrize(
    "reason", [supersede.ROW_SUPERSEDED, supersede.ROW_DELETED, supersede.ROW_NOT_FACT]
)
def test_a_row_that_is_not_a_live_fact_is_refused_with_the_reason(
    reason: str,
    stack: Stack,
) -> None:
    tenant, row = _pick(stack.load, reason)
    before = table(stack.conn)
    code, refused, err = stack.call(REJUDGE, **rejudge_raw(tenant, row))
    assert code == EXIT_BAD_INPUT
    assert supersede.ROW_REASONS[reason] in err
    assert refused["changed"] == 0
    assert table(stack.conn) == before


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ({"row": "not-a-uuid"}, "--row: expected a row id (a UUID), got 'not-a-uuid'"),
        ({"row": "1; DELETE FROM memory_items"}, "--row: expected a row id"),
        ({"row": str(uuid.UUID(int=7))}, "no such row"),
        ({"tenant": None}, "--tenant: is required"),
        ({"tenant": "tab\there"}, "control characters"),
        ({"yes": False}, "pass --yes"),
    ],
)
def test_bad_rejudge_requests_are_one_line_exit_2(
    raw: dict[str, Any],
    fragment: str,
    stack: Stack,
) -> None:
    before = table(stack.conn)
    code, refused, err = stack.call(REJUDGE, **rejudge_raw(tenant_with_facts(stack.load)) | raw)
    assert code == EXIT_BAD_INPUT
    assert fragment in err and len(err.splitlines()) == 1
    assert refused["ok"] is False
    assert table(stack.conn) == before
    assert audit_rows(stack.conn) == []


def test_rejudge_dry_run_counts_and_changes_nothing(stack: Stack) -> None:
    tenant = tenant_with_facts(stack.load)
    before = table(stack.conn)
    code, planned, _ = stack.call(REJUDGE, **rejudge_raw(tenant, dry_run=True))
    assert code == EXIT_OK
    assert planned["dry_run"] is True and planned["count"] == len(requeueable(stack.load, tenant))
    assert planned["changed"] == 0
    assert table(stack.conn) == before and audit_rows(stack.conn) == []


def test_the_update_and_its_audit_row_commit_together(
    conn: psycopg.Connection[Any], load: wl.Workload
) -> None:
    """An audit INSERT that fails (empty actor) takes the UPDATE with it."""
    tenant = tenant_with_facts(load)
    before = table(conn)
    with pytest.raises(psycopg.errors.CheckViolation):
        supersede.rejudge(conn, tenant, actor="")
    assert table(conn) == before and audit_rows(conn) == []


def test_an_already_queued_row_is_ok_and_changes_nothing(
    conn: psycopg.Connection[Any], load: wl.Workload
) -> None:
    queued = next(
        i
        for i in load.memory_items
        if i.source_kind == wl.FACT and not i.superseded_by and not i.deleted_at and not i.judge_at
    )
    before = table(conn)
    done = supersede.rejudge(conn, queued.tenant_id, row=uuid.UUID(queued.id), actor="t@h")
    assert (done.reason, done.count, done.refused) == (supersede.ROW_QUEUED, 0, False)
    assert table(conn) == before


# -- chain -----------------------------------------------------------------------------


def long_chains(load: wl.Workload, tenant: str | None = None) -> list[list[wl.MemoryItem]]:
    return [
        c for c in load.chains() if len(c) >= 3 and (tenant is None or c[0].tenant_id == tenant)
    ]


def test_chain_walk_returns_the_generators_chain_in_order(stack: Stack) -> None:
    for tenant in (HOSTILE, "glob*star", "percent%_like"):
        for expected in long_chains(stack.load, tenant):
            head = expected[-1]
            code, walked, err = stack.call(CHAIN, row=head.id, tenant=None, max_depth=None)
            assert code == EXIT_OK, err
            assert walked["head"] is True and walked["tenant"] == tenant
            assert [link["id"] for link in walked["links"]] == [i.id for i in reversed(expected)]
            assert [link["depth"] for link in walked["links"]] == list(range(len(expected)))
            assert walked["truncated"] is False and walked["cycle"] is False
            assert "content" not in json.dumps(walked)


def test_chain_from_a_superseded_row_walks_but_says_it_is_not_the_head(stack: Stack) -> None:
    expected = long_chains(stack.load)[0]
    stack.capsys.readouterr()
    raw = {"row": expected[1].id, "tenant": None, "max_depth": None}
    code = run_operation(CHAIN, raw, inventory_spec=str(stack.inventory), as_json=False)
    out, err = stack.capsys.readouterr()
    assert code == EXIT_OK
    assert "NOT the head" in out and f"superseded by {expected[2].id}" in err
    assert out.count(expected[0].id) == 1


def test_chain_depth_limit_truncates(conn: psycopg.Connection[Any], load: wl.Workload) -> None:
    expected = long_chains(load)[0]
    walked = supersede.walk_chain(conn, uuid.UUID(expected[-1].id), max_depth=1)
    assert [link.id for link in walked.links] == [i.id for i in reversed(expected)][:2]
    assert walked.truncated is True
    exact = supersede.walk_chain(conn, uuid.UUID(expected[-1].id), max_depth=len(expected) - 1)
    assert exact.truncated is False and len(exact.links) == len(expected)


def test_a_hand_made_cycle_is_detected_without_hanging(stack: Stack) -> None:
    oldest, middle, newest = long_chains(stack.load)[0][:3]
    stack.conn.execute(  # newest -> oldest closes the loop (the FK is satisfied: same tenant)
        "UPDATE memory_items SET superseded_by = %s WHERE id = %s",
        (uuid.UUID(oldest.id), uuid.UUID(newest.id)),
    )
    code, walked, err = stack.call(CHAIN, row=oldest.id, tenant=None, max_depth=None)
    assert code == EXIT_FAILED
    assert walked["cycle"] is True and walked["cycle_at"] == [oldest.id]
    assert [link["id"] for link in walked["links"]] == [oldest.id, newest.id, middle.id]
    assert "supersede cycle" in err


def test_chain_of_an_unknown_or_foreign_row_is_refused(stack: Stack) -> None:
    item = stack.load.items_of(HOSTILE)[0]
    for raw, fragment in (
        ({"row": str(uuid.UUID(int=9))}, "no such row"),
        ({"row": item.id, "tenant": "acme"}, "no such row in tenant 'acme'"),
        ({"row": "zzz"}, "--row: expected a row id"),
        ({"row": item.id, "max_depth": "0"}, "--max-depth: expected a whole number from 1"),
    ):
        code, _, err = stack.call(CHAIN, **{"tenant": None, "max_depth": None} | raw)
        assert code == EXIT_BAD_INPUT, raw
        assert fragment in err and len(err.splitlines()) == 1
