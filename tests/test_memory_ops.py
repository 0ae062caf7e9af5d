"""The memory.* operations (supersede lifecycle) against a real scratch PostgreSQL.

Data comes from the workload generator, hostile tenant names included. What
these tests prove: rejudge changes exactly the rows it names (one row, or a
tenant's live facts) and writes its audit row in the same transaction; another
tenant's row id, a dead row or a bad id changes nothing and says so; the chain
walk returns the generator's chain in order, stops on a hand-made cycle and at
the depth limit. Anonymize: a dry run changes nothing; --apply redacts exactly
the due rows (one transaction and audit row per batch, no content in it) and
removes their Qdrant points only; the safety floor blocks a mass run until
--allow-mass; tenant names are literals; a second run finds nothing due.
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
from qdrant_client import QdrantClient, models
from standin_server import RunningStandin

from memops.deploy.targets_file import merge_targets
from memops.exitcodes import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK
from memops.memory import supersede
from memops.memory.values import content_hash
from memops.ops.memory import ANONYMIZE, CHAIN, REJUDGE
from memops.ops.runner import Operation, run_operation
from memops.testing import workload as wl
from memops.testing.pgcluster import ClusterUnavailable, ScratchCluster, scratch_cluster

pytestmark = [
    pytest.mark.integration,
    pytest.mark.filterwarnings("ignore:Api key is used with an insecure connection"),
]

HOSTILE = "'; DROP TABLE memory_items; --"


@pytest.fixture(scope="module")
def cluster() -> Iterator[ScratchCluster]:
    try:
        with scratch_cluster("memops_memtest", 31506, app_role="memtest", db_prefix="mem") as c:
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
        cluster.migrate(conn)
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
    return {"namespace": tenant, "row": row, "dry_run": False, "yes": True} | given


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
    assert "belongs to another namespace" in err and "nothing changed" in err
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
        ({"namespace": None}, "--namespace: is required"),
        ({"namespace": "tab\there"}, "control characters"),
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
            code, walked, err = stack.call(CHAIN, row=head.id, namespace=None, max_depth=None)
            assert code == EXIT_OK, err
            assert walked["head"] is True and walked["tenant"] == tenant
            assert [link["id"] for link in walked["links"]] == [i.id for i in reversed(expected)]
            assert [link["depth"] for link in walked["links"]] == list(range(len(expected)))
            assert walked["truncated"] is False and walked["cycle"] is False
            assert "content" not in json.dumps(walked)


def test_chain_from_a_superseded_row_walks_but_says_it_is_not_the_head(stack: Stack) -> None:
    expected = long_chains(stack.load)[0]
    stack.capsys.readouterr()
    raw = {"row": expected[1].id, "namespace": None, "max_depth": None}
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
    code, walked, err = stack.call(CHAIN, row=oldest.id, namespace=None, max_depth=None)
    assert code == EXIT_FAILED
    assert walked["cycle"] is True and walked["cycle_at"] == [oldest.id]
    assert [link["id"] for link in walked["links"]] == [oldest.id, newest.id, middle.id]
    assert "supersede cycle" in err


def test_chain_of_an_unknown_or_foreign_row_is_refused(stack: Stack) -> None:
    item = stack.load.items_of(HOSTILE)[0]
    for raw, fragment in (
        ({"row": str(uuid.UUID(int=9))}, "no such row"),
        ({"row": item.id, "namespace": "acme"}, "no such row in namespace 'acme'"),
        ({"row": "zzz"}, "--row: expected a row id"),
        ({"row": item.id, "max_depth": "0"}, "--max-depth: expected a whole number from 1"),
    ):
        code, _, err = stack.call(CHAIN, **{"namespace": None, "max_depth": None} | raw)
        assert code == EXIT_BAD_INPUT, raw
        assert fragment in err and len(err.splitlines()) == 1


# -- anonymize -------------------------------------------------------------------------


def anonymize_raw(**given: Any) -> dict[str, Any]:
    return {
        "namespace": None,
        "apply": False,
        "yes": True,
        "allow_mass": False,
        "soft_ttl_days": None,
        "supersede_ttl_days": None,
        "max_share": None,
        "mass_min_rows": None,
        "batch_size": None,
    } | given


def due_ids(load: wl.Workload, tenant: str | None = None) -> set[str]:
    """Every workload timestamp is months in the past: all deleted or superseded rows are due."""
    return {
        i.id
        for i in load.memory_items
        if (tenant is None or i.tenant_id == tenant)
        and i.anonymized_at is None
        and (i.deleted_at is not None or i.superseded_by is not None)
    }


def test_anonymize_dry_run_counts_and_changes_nothing(stack: Stack) -> None:
    before = table(stack.conn)
    code, planned, err = stack.call(ANONYMIZE, **anonymize_raw())
    assert code == EXIT_OK, err
    assert planned["dry_run"] is True
    assert planned["counts"]["due"] == len(due_ids(stack.load)) > 0
    assert planned["counts"]["redacted"] == 0
    by_tenant = {t["tenant"]: t["due"] for t in planned["tenants"]}
    assert by_tenant == {
        t: len(due_ids(stack.load, t)) for t in stack.load.tenants if due_ids(stack.load, t)
    }
    assert table(stack.conn) == before and audit_rows(stack.conn) == []


def test_nothing_is_due_before_its_ttl(stack: Stack) -> None:
    code, planned, _ = stack.call(
        ANONYMIZE, **anonymize_raw(soft_ttl_days="100000", supersede_ttl_days="100000")
    )
    assert code == EXIT_OK and planned["counts"]["due"] == 0


def test_the_floor_blocks_a_mass_run_and_allow_mass_lets_it_through(stack: Stack) -> None:
    before = table(stack.conn)
    mass = {"apply": True, "max_share": "0.01", "mass_min_rows": "1"}
    code, blocked, err = stack.call(ANONYMIZE, **anonymize_raw(**mass))
    assert code == EXIT_BAD_INPUT  # a refusal: nothing changed
    err = err.splitlines()[-1]  # after the notes (here: qdrant is not deployed), one line
    assert "safety floor" in err and "--allow-mass" in err
    for plan in blocked["tenants"]:  # the refusal names each tenant with its due, total, share
        assert plan["blocked"] is True
        share = f"{plan['due'] / plan['total']:.0%}"
        named = f"namespace {plan['tenant']!r}"
        assert f"{named}: {plan['due']} of {plan['total']} rows due ({share})" in err
    assert blocked["counts"]["blocked"] == blocked["counts"]["due"] == len(due_ids(stack.load))
    assert blocked["counts"]["redacted"] == 0
    assert table(stack.conn) == before and audit_rows(stack.conn) == []

    code, done, err = stack.call(ANONYMIZE, **anonymize_raw(**mass, allow_mass=True))
    assert code == EXIT_OK, err
    assert done["counts"]["redacted"] == len(due_ids(stack.load))
    again = stack.call(ANONYMIZE, **anonymize_raw())[1]
    assert again["counts"]["due"] == 0


def test_applied_rows_are_redacted_and_keep_id_and_superseded_by(stack: Stack) -> None:
    tenant = HOSTILE
    expected = due_ids(stack.load, tenant)
    assert expected
    before = table(stack.conn)
    code, done, err = stack.call(
        ANONYMIZE, **anonymize_raw(namespace=tenant, apply=True, batch_size="1")
    )
    assert code == EXIT_OK, err
    assert done["counts"]["redacted"] == len(expected)
    after = table(stack.conn)
    columns = [c.name for c in stack.conn.execute("SELECT * FROM memory_items LIMIT 0").description]
    for row_id, row in before.items():
        if row_id not in expected:
            assert after[row_id] == row, row_id  # other rows and other tenants untouched
            continue
        old, new = (
            dict(zip(columns, row, strict=True)),
            dict(zip(columns, after[row_id], strict=True)),
        )
        assert new["content"] == supersede.REDACTED
        assert new["content_hash"] == content_hash(supersede.REDACTED)  # still validates
        assert new["user_id"] is new["agent_id"] is new["embedding"] is new["indexed_at"] is None
        assert new["anonymized_at"] is not None
        kept = ("id", "tenant_id", "superseded_by", "deleted_at", "created_at", "source_kind")
        assert {k: new[k] for k in kept} == {k: old[k] for k in kept}
    audits = audit_rows(stack.conn)
    assert len(audits) == len(expected)  # batch size 1: one transaction and audit row per row
    assert {a[1:3] for a in audits} == {("memory.anonymize", tenant)}
    assert all(set(a[3]) >= {"rows", "points_deleted", "batch"} for a in audits)
    assert "content" not in json.dumps([a[3] for a in audits])


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ({"apply": True, "yes": False}, "pass --yes"),
        ({"max_share": "0"}, "--max-share: expected a number greater than 0"),
        ({"max_share": "1.5"}, "--max-share: expected a number"),
        ({"batch_size": "0"}, "--batch-size: expected a whole number from 1"),
        ({"soft_ttl_days": "-1"}, "--soft-ttl-days: expected a number at least 0"),
    ],
)
def test_bad_anonymize_requests_are_one_line_exit_2(
    raw: dict[str, Any], fragment: str, stack: Stack
) -> None:
    before = table(stack.conn)
    code, _, err = stack.call(ANONYMIZE, **anonymize_raw(**raw))
    assert code == EXIT_BAD_INPUT
    assert fragment in err and len(err.splitlines()) == 1
    assert table(stack.conn) == before


def test_anonymize_removes_the_rows_points_and_publishes_counts(
    stack: Stack, standin: RunningStandin, client: QdrantClient, tmp_path: Path
) -> None:
    collections = ("memory_fact", "memory_chat")
    for kind in ("fact", "chat"):
        wl.write_qdrant(client, stack.load, f"memory_{kind}", kind=kind)
    textfiles = tmp_path / "textfile"
    textfiles.mkdir()
    component = {"kind": "qdrant", "url": standin.url, "api_key": standin.api_key}
    merge_targets(
        tmp_path / "state", "inv", {"qdrant": component}, {"textfile_dir": str(textfiles)}
    )
    # Points of due rows exist when the row was deleted after being indexed (the
    # generator drops those) or superseded: put one point of each due row back.
    tenant = HOSTILE
    due = due_ids(stack.load, tenant)
    items = {i.id: i for i in stack.load.items_of(tenant)}
    client.upsert(
        "memory_fact",
        points=[
            models.PointStruct(
                id=i, vector=[0.0] * stack.load.vector_dim, payload={"tenant_id": tenant}
            )
            for i in due
            if items[i].embedding is not None
        ],
        wait=True,
    )
    # A point with a due row's id under another tenant's payload is not that row's: it stays.
    stray = next(iter(due))
    client.create_collection(
        "memory_stray",
        vectors_config=models.VectorParams(
            size=stack.load.vector_dim, distance=models.Distance.COSINE
        ),
    )
    client.upsert(
        "memory_stray",
        points=[
            models.PointStruct(
                id=stray, vector=[1.0] * stack.load.vector_dim, payload={"tenant_id": "acme"}
            )
        ],
        wait=True,
    )
    before = {c: set(wl.read_qdrant(client, c, stack.load.tenants)) for c in collections}
    code, done, err = stack.call(ANONYMIZE, **anonymize_raw(namespace=tenant, apply=True))
    assert code == EXIT_OK, err
    after = {c: set(wl.read_qdrant(client, c, stack.load.tenants)) for c in collections}
    removed = set().union(*before.values()) - set().union(*after.values())
    assert removed and removed <= due
    assert done["counts"]["points_deleted"] == len(removed)
    assert all(after[c] == before[c] - due for c in collections)
    assert [str(p.id) for p in client.retrieve("memory_stray", [stray])] == [stray]
    metrics = (textfiles / "memops_anonymize.prom").read_text()
    assert f'memops_anonymize_last_run_rows{{action="redacted"}} {len(due)}' in metrics
    assert f'memops_anonymize_last_run_rows{{action="points_deleted"}} {len(removed)}' in metrics
    assert 'memops_anonymize_last_run_rows{action="blocked"} 0' in metrics


def test_a_second_apply_finds_nothing_due(stack: Stack) -> None:
    code, first, err = stack.call(ANONYMIZE, **anonymize_raw(apply=True, allow_mass=True))
    assert code == EXIT_OK, err
    assert first["counts"]["redacted"] == len(due_ids(stack.load)) > 0
    table_after, audits_after = table(stack.conn), audit_rows(stack.conn)
    code, second, err = stack.call(ANONYMIZE, **anonymize_raw(apply=True, allow_mass=True))
    assert code == EXIT_OK, err
    assert second["counts"] == {"due": 0, "redacted": 0, "points_deleted": 0, "blocked": 0}
    assert table(stack.conn) == table_after and audit_rows(stack.conn) == audits_after


@pytest.mark.parametrize("tenant", ["glob*star", "percent%_like", "[brackets]", "acme", HOSTILE])
def test_a_tenant_name_is_a_literal(stack: Stack, tenant: str) -> None:
    """A glob or LIKE character matches only itself; "acme" is not "acme:eu" nor "ACME"."""
    assert tenant in stack.load.tenants
    code, planned, err = stack.call(ANONYMIZE, **anonymize_raw(namespace=tenant))
    assert code == EXIT_OK, err
    assert [t["tenant"] for t in planned["tenants"]] == [tenant]
    assert planned["counts"]["due"] == len(due_ids(stack.load, tenant)) > 0
    before = table(stack.conn)
    code, _, err = stack.call(
        ANONYMIZE, **anonymize_raw(namespace=tenant, apply=True, allow_mass=True)
    )
    assert code == EXIT_OK, err
    changed = {k for k, row in table(stack.conn).items() if before[k] != row}
    assert changed == due_ids(stack.load, tenant)


def test_a_tenant_with_no_rows_has_nothing_due(stack: Stack) -> None:
    code, planned, err = stack.call(ANONYMIZE, **anonymize_raw(namespace="%", apply=True))
    assert code == EXIT_OK, err
    assert planned["counts"]["due"] == 0 and planned["tenants"] == []


def test_settings_come_from_the_inventory_unless_given(stack: Stack) -> None:
    variables = stack.inventory / "group_vars" / "all.yml"
    variables.write_text(
        "memory_anonymize_soft_ttl_days: 100000\nmemory_anonymize_supersede_ttl_days: 100000\n"
    )
    code, planned, err = stack.call(ANONYMIZE, **anonymize_raw())
    assert code == EXIT_OK, err
    assert planned["counts"]["due"] == 0
    assert planned["settings"]["soft_ttl_days"] == 100000
    code, planned, err = stack.call(ANONYMIZE, **anonymize_raw(supersede_ttl_days="0"))
    assert code == EXIT_OK, err
    superseded = {
        i.id
        for i in stack.load.memory_items
        if i.anonymized_at is None and i.superseded_by is not None
    }
    assert planned["counts"]["due"] == len(superseded) > 0
    variables.write_text("memory_anonymize_max_share: 2\n")
    code, _, err = stack.call(ANONYMIZE, **anonymize_raw())
    assert code == EXIT_BAD_INPUT
    assert "inventory variable memory_anonymize_max_share: expected a number" in err


def test_the_default_floor_holds_back_only_the_tenants_over_it(stack: Stack) -> None:
    load = stack.load
    share = {t: len(due_ids(load, t)) / len(load.items_of(t)) for t in load.tenants}
    over = {t for t, s in share.items() if s > supersede.DEFAULT_MAX_SHARE}
    under = {t for t, s in share.items() if 0 < s <= supersede.DEFAULT_MAX_SHARE}
    assert over and under  # the workload has both
    before = table(stack.conn)
    code, done, err = stack.call(ANONYMIZE, **anonymize_raw(apply=True))
    assert code == EXIT_FAILED  # partial: some tenants done, the others refused
    assert {d["tenant"] for d in done["done"]} == under
    assert {t["tenant"] for t in done["tenants"] if t["blocked"]} == over
    changed = {k for k, row in table(stack.conn).items() if before[k] != row}
    assert changed == set().union(*(due_ids(load, t) for t in under))
    assert all(f"namespace {t!r}: " in err for t in over)
