"""The backup.* operations end to end through the runner, on a Qdrant stand-in.

The stand-in is a real server process (the one `invoke up` deploys offline);
the inventory and its targets.json are written here, so these tests need no
deployed stack. What they prove: a set is created and verified, listed, a
flipped byte is refused by verify and by restore with the live data unchanged,
a namespace restore touches only that tenant, and bad input (set ids, tiers,
namespaces, a missing --yes, a busy lock) is one line, exit 2, nothing touched.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import subprocess
import sys
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from op_calls import call
from qdrant_client import QdrantClient, models
from standin_server import RunningStandin

from memops.audit import AUDIT_FILE
from memops.backup.manifest import MANIFEST_NAME, parse_manifest
from memops.deploy.targets_file import merge_targets
from memops.exitcodes import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK
from memops.locking import action_lock
from memops.ops import inflight
from memops.ops.backup import CREATE, LIST, PRUNE, RESTORE, VERIFY
from memops.ops.drill import DRILL
from memops.ops.runner import run_operation
from memops.progress import format_amount
from memops.testing import workload as wl

pytestmark = pytest.mark.filterwarnings("ignore:Api key is used with an insecure connection")

COLLECTIONS = ("memory_chat", "memory_document")


@pytest.fixture
def load(client: QdrantClient) -> wl.Workload:
    data = wl.generate(seed=4242, tenants=3, items_per_tenant=8)
    for name in COLLECTIONS:
        wl.write_qdrant(client, data, name, kind=name.removeprefix("memory_"))
    return data


@pytest.fixture
def inventory(tmp_path: Path, standin: RunningStandin, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An inventory directory whose state directory records only the stand-in."""
    root = tmp_path / "inv"
    (root / "group_vars").mkdir(parents=True)
    (root / "hosts.yml").write_text("all:\n  hosts:\n    localhost:\n")
    (root / "group_vars" / "all.yml").write_text(
        f"backup_local_dir: {tmp_path / 'sets'}\nbackup_retention_daily: 2\n"
        "backup_retention_weekly: 1\n"
    )
    state = tmp_path / "state"
    monkeypatch.setenv("MEMOPS_STATE_DIR", str(state))
    component = {"kind": "qdrant", "url": standin.url, "api_key": standin.api_key}
    merge_targets(state, "inv", {"qdrant": component}, {})
    return root


def everything(client: QdrantClient, load: wl.Workload) -> dict[str, Any]:
    return {name: wl.read_qdrant(client, name, load.tenants) for name in COLLECTIONS}


CREATE_RAW = {"tier": None, "namespace": None, "target": None}


def restore_raw(set_id: str, **given: Any) -> dict[str, Any]:
    return {
        "set_id": set_id,
        "tier": None,
        "namespace": None,
        "target": None,
        "dry_run": False,
        "yes": True,
    } | given


def test_create_list_verify_and_restore_a_whole_set(
    inventory: Path, client: QdrantClient, load: wl.Workload, capsys: pytest.CaptureFixture[str]
) -> None:
    before = everything(client, load)
    code, made, _ = call(CREATE, inventory, capsys, **CREATE_RAW)
    assert code == EXIT_OK, made
    assert made["verify"]["ok"] is True
    assert made["counts"]["qdrant"] == sum(len(points) for points in before.values()) > 0
    set_id = made["set_id"]

    code, listed, _ = call(LIST, inventory, capsys, target=None)
    assert [s["set_id"] for s in listed["sets"]] == [set_id]

    for name in COLLECTIONS:
        client.delete_collection(name)
    code, restored, err = call(RESTORE, inventory, capsys, **restore_raw(set_id))
    assert code == EXIT_OK, (restored, err)
    assert everything(client, load) == before

    audit = (Path(inventory.parent / "state") / AUDIT_FILE).read_text().splitlines()
    actions = [(json.loads(line)["action"], json.loads(line)["result"]) for line in audit]
    assert actions == [  # a locked action's line as it starts, then its result
        ("backup.create", "started"),
        ("backup.create", "ok"),
        ("backup.list", "ok"),
        ("backup.restore", "started"),
        ("backup.restore", "ok"),
    ]


def test_a_watched_backup_reports_what_each_step_counted(
    inventory: Path, client: QdrantClient, load: wl.Workload, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without --json and without a terminal, each counted step ends in one line on stderr."""
    capsys.readouterr()
    code = run_operation(CREATE, CREATE_RAW, inventory_spec=str(inventory), as_json=False)
    _, err = capsys.readouterr()
    assert code == EXIT_OK, err
    for name in COLLECTIONS:
        points = len(wl.read_qdrant(client, name, load.tenants))
        assert f"  … qdrant {name}: {points:,} points" in err.splitlines()
    stored = [line for line in err.splitlines() if line.startswith("  … storing ")]
    set_dir = next((inventory.parent / "sets").iterdir())
    for line in stored:  # every stored file's line carries its size on disk
        name = line.removeprefix("  … storing ").split(":")[0]
        size = (set_dir / name).stat().st_size
        assert line.endswith(format_amount(size, "bytes")), line
    assert len(stored) == len(parse_manifest((set_dir / MANIFEST_NAME).read_bytes()).files)

    code, _, err = call(CREATE, inventory, capsys, **CREATE_RAW)
    assert code == EXIT_OK
    assert "…" not in err  # --json: the steps stay silent


def test_a_flipped_byte_is_refused_and_nothing_is_restored(
    inventory: Path,
    client: QdrantClient,
    load: wl.Workload,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, made, _ = call(CREATE, inventory, capsys, **CREATE_RAW)
    set_id = made["set_id"]
    victim = next((tmp_path / "sets" / set_id).rglob("*.jsonl.gz"))
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0x01
    victim.write_bytes(bytes(data))
    name = str(victim.relative_to(tmp_path / "sets" / set_id))

    code, report, err = call(VERIFY, inventory, capsys, set_id=set_id, target=None)
    assert code == EXIT_FAILED
    assert name in report["problem"] and name in err

    wl.write_qdrant(client, wl.generate(seed=1, tenants=1, items_per_tenant=2), COLLECTIONS[0])
    live = everything(client, load)
    code, _, err = call(RESTORE, inventory, capsys, **restore_raw(set_id))
    assert code == EXIT_BAD_INPUT
    assert name in err and "nothing was restored" in err
    assert everything(client, load) == live


def test_a_namespace_restore_touches_only_that_tenant(
    inventory: Path, client: QdrantClient, load: wl.Workload, capsys: pytest.CaptureFixture[str]
) -> None:
    code, made, _ = call(CREATE, inventory, capsys, **CREATE_RAW)
    assert code == EXIT_OK
    # a tenant that has document points (which tenants do depends on the workload's draw)
    chosen = next(t for t in load.tenants if wl.read_qdrant(client, COLLECTIONS[1], [t]))
    others = [t for t in load.tenants if t != chosen]
    original = wl.read_qdrant(client, COLLECTIONS[1], [chosen])
    for name in COLLECTIONS:  # damage every tenant; only `chosen` comes back
        client.delete(name, points_selector=models.FilterSelector(filter=models.Filter()))
    wl.write_qdrant(client, load, COLLECTIONS[0], kind="chat")
    damaged = {t: wl.read_qdrant(client, COLLECTIONS[1], [t]) for t in others}

    code, _restored, err = call(
        RESTORE, inventory, capsys, **restore_raw(made["set_id"], namespace=[chosen])
    )
    assert code == EXIT_OK, err
    assert original and wl.read_qdrant(client, COLLECTIONS[1], [chosen]) == original
    assert {t: wl.read_qdrant(client, COLLECTIONS[1], [t]) for t in others} == damaged


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ({"set_id": "../etc"}, "invalid backup set id"),
        ({"set_id": "20990101T000000Z-abcd"}, "no backup set"),
        ({"tier": "redis,bogus"}, "--tier: unknown 'bogus'"),
        ({"namespace": ["nobody-has-this"]}, "namespace 'nobody-has-this' is not in"),
        ({"yes": False}, "pass --yes"),
    ],
)
def test_bad_restore_requests_touch_nothing(
    inventory: Path,
    client: QdrantClient,
    load: wl.Workload,
    capsys: pytest.CaptureFixture[str],
    raw: dict[str, Any],
    fragment: str,
) -> None:
    code, made, _ = call(CREATE, inventory, capsys, **CREATE_RAW)
    client.delete_collection(COLLECTIONS[0])
    live = {c.name for c in client.get_collections().collections}
    request = restore_raw(made["set_id"]) | raw
    code, document, err = call(RESTORE, inventory, capsys, **request)
    assert code == EXIT_BAD_INPUT
    assert fragment in err and len(err.splitlines()) == 1
    assert document["ok"] is False
    assert {c.name for c in client.get_collections().collections} == live


def test_a_run_under_the_holders_lock_leaves_the_holders_record_alone(
    inventory: Path, load: wl.Workload
) -> None:
    """What the backup host's run does under the controller's lock (same state directory
    when the host is the controller): it neither takes the holder's inflight.json for a
    killed action nor records the start a second time."""
    state = inventory.parent / "state"
    repo = Path(__file__).resolve().parents[1]
    with action_lock(state, "backup.create"):  # exports MEMOPS_LOCK_TOKEN, as the holder does
        inflight.begin(state, "backup.create", {"inventory": "inv"})
        before = (state / inflight.INFLIGHT_FILE).read_text()
        env = {**os.environ, "PYTHONPATH": str(repo), "MEMOPS_STATE_DIR": str(state)}
        run = subprocess.run(
            [sys.executable, "-m", "invoke", "backup.create", "--inventory", str(inventory)],
            cwd=repo,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert run.returncode == 0, run.stderr
        assert "did not finish" not in run.stderr
        assert (state / inflight.INFLIGHT_FILE).read_text() == before
        inflight.end(state)
    results = [json.loads(line)["result"] for line in (state / AUDIT_FILE).read_text().splitlines()]
    assert results == ["ok"]


def test_latest_and_oldest_name_the_newest_and_oldest_set(
    inventory: Path, client: QdrantClient, load: wl.Workload, capsys: pytest.CaptureFixture[str]
) -> None:
    first = call(CREATE, inventory, capsys, **CREATE_RAW)[1]["set_id"]
    second = call(CREATE, inventory, capsys, **CREATE_RAW)[1]["set_id"]
    code, report, _ = call(VERIFY, inventory, capsys, set_id="oldest", target=None)
    assert code == EXIT_OK and report["set_id"] == first
    code, restored, err = call(RESTORE, inventory, capsys, **restore_raw("latest", dry_run=True))
    assert code == EXIT_OK, err
    assert restored["set_id"] == second and second in restored["plan"][0]


def test_a_second_destructive_task_is_refused_by_the_lock(
    inventory: Path, load: wl.Workload, capsys: pytest.CaptureFixture[str]
) -> None:
    state = inventory.parent / "state"
    with action_lock(state, "backup.restore"):
        code, _document, err = call(CREATE, inventory, capsys, **CREATE_RAW)
    assert code == EXIT_BAD_INPUT
    assert "backup.restore" in err  # names the holder
    assert not (inventory.parent / "sets").exists() or not any(
        (inventory.parent / "sets").iterdir()
    )


def test_prune_dry_run_lists_and_prune_removes_what_policy_drops(
    inventory: Path, load: wl.Workload, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    made = [call(CREATE, inventory, capsys, **CREATE_RAW)[1]["set_id"] for _ in range(2)]
    (tmp_path / "sets" / "20200101T000000Z-dead").mkdir()  # incomplete: no manifest
    code, plan, _ = call(PRUNE, inventory, capsys, target=None, dry_run=True, yes=False)
    assert code == EXIT_OK
    drop = {d["set_id"] for d in plan["decisions"] if not d["keep"]}
    # Both sets are from today: daily keeps the newest, weekly the same one.
    assert drop == {made[0], "20200101T000000Z-dead"}
    assert sorted(p.name for p in (tmp_path / "sets").iterdir()) == sorted(
        [*made, "20200101T000000Z-dead"]
    )
    code, _, err = call(PRUNE, inventory, capsys, target=None, dry_run=False, yes=False)
    assert code == EXIT_BAD_INPUT and "--yes" in err
    code, pruned, _ = call(PRUNE, inventory, capsys, target=None, dry_run=False, yes=True)
    assert code == EXIT_OK and set(pruned["removed"]) == drop
    assert [p.name for p in (tmp_path / "sets").iterdir()] == [made[1]]


def _aged(sets_dir: Path, set_id: str, days: float) -> None:
    """Date a real set ``days`` earlier (its manifest, resealed): sets of other days."""
    path = sets_dir / set_id / MANIFEST_NAME
    manifest = parse_manifest(path.read_bytes())
    shift = timedelta(days=days)
    older = replace(
        manifest, started_at=manifest.started_at - shift, finished_at=manifest.finished_at - shift
    )
    path.write_bytes(older.to_bytes())


def test_prune_keeps_the_whole_set_that_namespace_sets_followed(
    inventory: Path, load: wl.Workload, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue #22: the safety backups rebuild.* takes (namespace sets) do not displace the
    day's whole set, and they go after backup_retention_namespace_days."""
    variables = inventory / "group_vars" / "all.yml"
    variables.write_text(variables.read_text() + "backup_retention_namespace_days: 3\n")
    tenant = {"namespace": [load.tenants[0]]}
    whole = call(CREATE, inventory, capsys, **CREATE_RAW)[1]["set_id"]
    old, recent = (call(CREATE, inventory, capsys, **CREATE_RAW | tenant)[1] for _ in range(2))
    assert old["namespaces"] == recent["namespaces"] == [load.tenants[0]]
    _aged(tmp_path / "sets", old["set_id"], days=4)

    code, pruned, err = call(PRUNE, inventory, capsys, target=None, dry_run=False, yes=True)
    assert code == EXIT_OK, err
    reasons = {d["set_id"]: (d["keep"], d["reason"]) for d in pruned["decisions"]}
    assert reasons[whole][0]
    assert re.fullmatch(r"daily [-\d]{10}, weekly \d{4}-W\d\d, newest verified", reasons[whole][1])
    assert reasons[recent["set_id"]] == (True, "namespace set within 3 days")
    assert reasons[old["set_id"]] == (False, "namespace set older than 3 days")
    assert pruned["removed"] == [old["set_id"]]
    assert sorted(p.name for p in (tmp_path / "sets").iterdir()) == [whole, recent["set_id"]]


def test_a_bad_namespace_retention_is_refused_in_one_line(
    inventory: Path, load: wl.Workload, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    made = call(CREATE, inventory, capsys, **CREATE_RAW)[1]["set_id"]
    variables = inventory / "group_vars" / "all.yml"
    variables.write_text(variables.read_text() + "backup_retention_namespace_days: a week\n")
    code, document, err = call(PRUNE, inventory, capsys, target=None, dry_run=False, yes=True)
    assert code == EXIT_BAD_INPUT and document["ok"] is False
    assert err == (
        "memops backup.prune: backup_retention_namespace_days: "
        "expected a whole number of 0 or more, got 'a week'"
    )
    assert [p.name for p in (tmp_path / "sets").iterdir()] == [made]


def test_the_drill_without_an_id_drills_the_newest_whole_set(
    inventory: Path, load: wl.Workload, capsys: pytest.CaptureFixture[str]
) -> None:
    tenant = {"namespace": [load.tenants[0]]}
    call(CREATE, inventory, capsys, **CREATE_RAW | tenant)
    code, _, err = call(DRILL, inventory, capsys, set_id=None, target=None)
    assert code == EXIT_FAILED and "no whole backup set" in err
    whole = call(CREATE, inventory, capsys, **CREATE_RAW)[1]["set_id"]
    call(CREATE, inventory, capsys, **CREATE_RAW | tenant)
    code, report, err = call(DRILL, inventory, capsys, set_id=None, target=None)
    assert code == EXIT_OK, err
    assert report["set_id"] == whole


def test_the_drill_passes_on_a_good_set(
    inventory: Path, client: QdrantClient, load: wl.Workload, capsys: pytest.CaptureFixture[str]
) -> None:
    code, made, _ = call(CREATE, inventory, capsys, **CREATE_RAW)
    live = {c.name for c in client.get_collections().collections}
    code, report, err = call(DRILL, inventory, capsys, set_id=None, target=None)
    assert code == EXIT_OK, err
    assert report["ok"] is True and report["set_id"] == made["set_id"]
    assert report["tiers"]["qdrant"]["items"] == made["counts"]["qdrant"]
    assert report["rto_seconds"] > 0 and report["rpo_seconds"] >= 0
    # the scratch collections are gone again; the live ones untouched
    assert {c.name for c in client.get_collections().collections} == live
    last = inventory.parent / "state" / "drills" / "last.json"
    assert json.loads(last.read_text())["set_id"] == made["set_id"]


def test_the_drill_fails_naming_the_tier_when_the_export_is_empty(
    inventory: Path,
    client: QdrantClient,
    load: wl.Workload,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A set that is internally consistent (checksums match) but holds no points."""
    code, made, _ = call(CREATE, inventory, capsys, **CREATE_RAW)
    folder = tmp_path / "sets" / made["set_id"]
    manifest = parse_manifest((folder / MANIFEST_NAME).read_bytes())
    files = []
    for record in manifest.files:
        path = folder / record.name
        if record.name.endswith(".snapshot"):  # leave only the logical export to restore
            path.unlink()
            continue
        header = gzip.decompress(path.read_bytes()).splitlines()[0] + b"\n"
        path.write_bytes(gzip.compress(header))
        data = path.read_bytes()
        files.append(replace(record, size=len(data), sha256=hashlib.sha256(data).hexdigest()))
    artifact = manifest.artifacts["qdrant"]
    exports = tuple(name for name in artifact.files if not name.endswith(".snapshot"))
    artifacts = {"qdrant": replace(artifact, files=exports)}
    tampered = replace(manifest, files=tuple(files), artifacts=artifacts)
    (folder / MANIFEST_NAME).write_bytes(tampered.to_bytes())
    verified = call(VERIFY, inventory, capsys, set_id=made["set_id"], target=None)
    assert verified[0] == EXIT_OK, verified

    code, report, err = call(DRILL, inventory, capsys, set_id=made["set_id"], target=None)
    assert code == EXIT_FAILED
    assert report["failed_tier"] == "qdrant"
    assert err.startswith("memops backup.drill: qdrant:") and "differ" in err
