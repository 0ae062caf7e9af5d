"""docs/runbooks/supersede-lifecycle.md, every step run as typed, against a scratch stack.

Each ``### `` section of the runbook runs on a fresh database loaded with the
workload generator's data (R2 continues on M3's, whose set and anonymize it
undoes). Steps are parsed, typed and matched by tests/runbook_steps.py; the
placeholders the reader types (``<namespace>``, ``<row>``, ``<head>``,
``<other-namespace>``) are filled from the data, ``<set-id>`` is read from the
output that first prints it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from runbook_steps import Step, check_output, parse, run_invoke

from memops.deploy.targets_file import merge_targets
from memops.paths import PROJECT_DIR
from memops.testing import workload as wl
from memops.testing.pgcluster import ClusterUnavailable, ScratchCluster, scratch_cluster

pytestmark = pytest.mark.integration

RUNBOOK = PROJECT_DIR / "docs" / "runbooks" / "supersede-lifecycle.md"
CONTINUES = {"R2: restore one namespace"}  # runs on the previous section's database
TYPED = ("namespace", "other-namespace", "row", "head")  # placeholders filled from the data


def chain_length(load: wl.Workload, head: str) -> int:
    older = {i.superseded_by: i.id for i in load.memory_items if i.superseded_by}
    length, row = 1, head
    while row in older:
        length, row = length + 1, older[row]
    return length


def is_due(item: wl.MemoryItem) -> bool:  # every workload timestamp is months old
    return item.anonymized_at is None and (item.deleted_at is not None or bool(item.superseded_by))


def scenario(load: wl.Workload) -> dict[str, str]:
    """A plainly named tenant with a judged live fact, a chain of 3, and most rows due."""
    plain = [t for t in load.tenants if re.fullmatch(r"[a-z][a-z0-9-]*", t)]
    for tenant in plain:
        items = load.items_of(tenant)
        live = [
            i
            for i in items
            if i.source_kind == wl.FACT and i.superseded_by is None and i.deleted_at is None
        ]
        judged = [i for i in live if i.judge_at is not None]
        heads = [i for i in live if chain_length(load, i.id) >= 3]
        if judged and heads and sum(map(is_due, items)) > len(items) / 2:
            other = next(t for t in plain if t != tenant)
            return {
                "namespace": tenant,
                "other-namespace": other,
                "row": judged[0].id,
                "head": heads[0].id,
            }
    raise AssertionError("the workload has no tenant for the runbook's scenario")


@pytest.fixture(scope="module")
def cluster() -> Iterator[ScratchCluster]:
    try:
        with scratch_cluster("memops_memtest", 31506, app_role="runbook", db_prefix="rb") as c:
            yield c
    except ClusterUnavailable as exc:
        pytest.skip(str(exc))


@dataclass
class Stack:
    cluster: ScratchCluster
    root: Path
    load: wl.Workload

    @property
    def inventory(self) -> Path:
        return self.root / "inv"

    @property
    def state(self) -> Path:
        return self.root / "state"

    def fresh_database(self) -> None:
        name = self.cluster.new_database()
        with self.cluster.connect(name, autocommit=True) as conn:
            self.cluster.migrate(conn)
            wl.write_postgres(conn, self.load)
        admin = {"socket_dir": str(self.cluster.socket_dir), "port": self.cluster.port}
        merge_targets(
            self.state,
            "inv",
            {"postgresql": {"kind": "postgresql", **self.cluster.ops_params(name)}},
            {"postgresql": admin | {"admin_user": "postgres", "app_user": self.cluster.app_role}},
        )

    def run(self, step: Step, values: dict[str, str]) -> list[str]:
        return run_invoke(step, values, self.inventory, self.state)


@pytest.fixture
def stack(cluster: ScratchCluster, tmp_path: Path) -> Stack:
    inventory = tmp_path / "inv"
    (inventory / "group_vars").mkdir(parents=True)
    (inventory / "hosts.yml").write_text("all:\n  hosts:\n    localhost:\n")
    (inventory / "group_vars" / "all.yml").write_text("{}\n")
    return Stack(cluster, tmp_path, wl.generate(seed=5150, tenants=2, items_per_tenant=12))


def test_the_runbook_has_the_procedures() -> None:
    titles = [s.title.split(":")[0] for s in parse(RUNBOOK.read_text())]
    assert titles == ["A1", "A2", "A3", "M1", "M2", "M3", "R2", "R3"]
    assert all(s.steps for s in parse(RUNBOOK.read_text()))


def test_every_step_prints_what_the_runbook_says(stack: Stack) -> None:
    values = scenario(stack.load)
    ran = 0
    for section in parse(RUNBOOK.read_text()):
        if section.title not in CONTINUES:
            stack.fresh_database()
            values = {k: v for k, v in values.items() if k in TYPED}
        for step in section.steps:
            check_output(step, stack.run(step, values), values)
            ran += 1
    assert ran >= 25
