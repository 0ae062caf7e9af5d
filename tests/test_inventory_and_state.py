"""Pure logic around a deploy: inventory checks, targets.json merging, audit log, lock."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from memops.audit import AUDIT_FILE, append_audit
from memops.deploy.inventory import InventoryError, check_yaml_files, resolve_inventory
from memops.deploy.targets import TargetsError, load_targets
from memops.deploy.targets_file import merge_targets
from memops.locking import LockBusyError, action_lock

REDIS = {"kind": "redis", "host": "127.0.0.1", "port": 16379, "password": "s3cret"}
QDRANT = {"kind": "qdrant", "url": "http://127.0.0.1:16333", "api_key": "k"}


def test_known_inventory_resolves_by_name() -> None:
    inventory = resolve_inventory("local")
    assert inventory.name == "local"
    assert inventory.path.is_dir()


def test_unknown_inventory_names_the_known_ones() -> None:
    with pytest.raises(InventoryError, match=r"'nope' not found \(known inventories: .*local"):
        resolve_inventory("nope")


def test_vault_tags_are_accepted() -> None:
    check_yaml_files(Path(__file__).resolve().parent.parent / "inventory" / "production")


def test_malformed_yaml_names_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "group_vars").mkdir()
    (tmp_path / "hosts.yml").write_text("---\nall: {}\n")
    (tmp_path / "group_vars" / "all.yml").write_text("---\na: 1\nb: [2\n")
    with pytest.raises(InventoryError, match=r"all\.yml: malformed YAML at line \d+ column \d+"):
        resolve_inventory(str(tmp_path))


def test_merge_keeps_components_a_limited_deploy_did_not_touch(tmp_path: Path) -> None:
    assert merge_targets(tmp_path, "local", {"redis": REDIS}, {}) is True
    assert merge_targets(tmp_path, "local", {"qdrant": QDRANT}, {"qdrant": {"standin": True}})
    targets = load_targets(tmp_path)
    assert set(targets.components) == {"redis", "qdrant"}
    assert os.stat(tmp_path / "targets.json").st_mode & 0o777 == 0o600
    document = json.loads((tmp_path / "targets.json").read_text())
    assert document["deployment"] == {"qdrant": {"standin": True}}


def test_a_kind_named_per_host_replaces_its_single_name_and_back(tmp_path: Path) -> None:
    node = {"kind": "http", "url": "http://10.0.0.1:9100/"}
    merge_targets(tmp_path, "lab", {"redis": REDIS, "node_exporter": node}, {})
    # node_exporter now on two hosts: the bare name goes, redis stays
    merge_targets(tmp_path, "lab", {"node_exporter@a": node, "node_exporter@b": node}, {})
    assert set(load_targets(tmp_path).components) == {"redis", "node_exporter@a", "node_exporter@b"}
    # a deploy limited to host a keeps host b
    merge_targets(tmp_path, "lab", {"node_exporter@a": node}, {})
    assert set(load_targets(tmp_path).components) == {"redis", "node_exporter@a", "node_exporter@b"}
    merge_targets(tmp_path, "lab", {"node_exporter": node}, {})
    assert set(load_targets(tmp_path).components) == {"redis", "node_exporter"}


def test_merge_reports_no_change_and_keeps_the_file(tmp_path: Path) -> None:
    merge_targets(tmp_path, "local", {"redis": REDIS}, {})
    before = (tmp_path / "targets.json").read_text()
    assert merge_targets(tmp_path, "local", {"redis": REDIS}, {}) is False
    assert (tmp_path / "targets.json").read_text() == before


def test_merge_refuses_an_invalid_component_and_writes_nothing(tmp_path: Path) -> None:
    with pytest.raises(TargetsError, match="port"):
        merge_targets(tmp_path, "local", {"redis": {**REDIS, "port": "sixteen"}}, {})
    assert not (tmp_path / "targets.json").exists()


def test_nothing_deployed_writes_nothing(tmp_path: Path) -> None:
    assert merge_targets(tmp_path, "local", {}, {}) is False
    assert not (tmp_path / "targets.json").exists()


def test_audit_lines_are_json_and_private(tmp_path: Path) -> None:
    append_audit(tmp_path, "deploy", {"inventory": "local"}, "ok", {"changed": 3})
    append_audit(tmp_path, "health", {"inventory": "local"}, "degraded")
    lines = [json.loads(line) for line in (tmp_path / AUDIT_FILE).read_text().splitlines()]
    assert [line["action"] for line in lines] == ["deploy", "health"]
    assert lines[0]["details"] == {"changed": 3} and lines[1]["result"] == "degraded"
    assert {"at", "user", "host"} <= set(lines[0])
    assert os.stat(tmp_path / AUDIT_FILE).st_mode & 0o777 == 0o600


def test_second_action_on_the_same_state_dir_is_refused(tmp_path: Path) -> None:
    with (
        action_lock(tmp_path, "deploy"),
        pytest.raises(LockBusyError, match="deploy pid"),
        action_lock(tmp_path, "restore"),
    ):
        pass
    with action_lock(tmp_path, "deploy"):  # released again
        pass


@pytest.fixture
def held_elsewhere(tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process holds the stack lock of tmp_path as backup.drill until its stdin closes."""
    script = (
        "import sys; from pathlib import Path; from memops.locking import action_lock\n"
        "with action_lock(Path(sys.argv[1]), 'backup.drill'):\n"
        "    print('held', flush=True)\n"
        "    sys.stdin.readline()\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "MEMOPS_LOCK_TOKEN"}
    holder = subprocess.Popen(
        [sys.executable, "-c", script, str(tmp_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert holder.stdout is not None and holder.stdin is not None
    try:
        assert holder.stdout.readline() == "held\n"
        yield holder
    finally:
        if not holder.stdin.closed:
            holder.stdin.close()
        holder.wait(10)


def test_without_a_wait_a_held_lock_is_refused_at_once(
    tmp_path: Path, held_elsewhere: subprocess.Popen[str]
) -> None:
    waits: list[str] = []
    started = time.monotonic()
    with (
        pytest.raises(LockBusyError) as refused,
        action_lock(tmp_path, "backup.create", on_wait=waits.append),
    ):
        pass
    assert time.monotonic() - started < 0.5
    assert refused.value.holder == f"backup.drill pid {held_elsewhere.pid}"
    assert refused.value.waited_s < 0.5 and waits == []
    assert "MEMOPS_LOCK_WAIT=SECONDS" in str(refused.value)


def test_a_waiting_action_takes_the_lock_once_the_holder_lets_go(
    tmp_path: Path, held_elsewhere: subprocess.Popen[str]
) -> None:
    waits: list[str] = []

    def waiting(holder: str) -> None:  # said once; the holder finishes a little later
        waits.append(holder)
        time.sleep(0.3)
        assert held_elsewhere.stdin is not None
        held_elsewhere.stdin.close()

    started = time.monotonic()
    with action_lock(tmp_path, "backup.create", wait_s=30, on_wait=waiting) as held:
        assert held.previous_unfinished is None  # the holder had finished, not died
        recorded = (tmp_path / "action.lock").read_text()
        assert recorded.startswith(f"backup.create pid {os.getpid()} token ")
    assert waits == [f"backup.drill pid {held_elsewhere.pid}"]
    assert 0.3 <= held.waited_s <= time.monotonic() - started < 10


def test_a_waiting_action_gives_up_at_its_deadline_naming_the_holder(
    tmp_path: Path, held_elsewhere: subprocess.Popen[str]
) -> None:
    waits: list[str] = []
    started = time.monotonic()
    with (
        pytest.raises(LockBusyError) as gave_up,
        action_lock(tmp_path, "backup.create", wait_s=1.5, on_wait=waits.append),
    ):
        pass
    elapsed = time.monotonic() - started
    holder = f"backup.drill pid {held_elsewhere.pid}"
    assert 1.5 <= gave_up.value.waited_s <= elapsed < 5
    assert waits == [holder]  # said once, not at every poll
    assert gave_up.value.holder == holder
    assert str(gave_up.value) == (
        f"gave up after waiting 1.5 s for {tmp_path / 'action.lock'}, held by {holder}; "
        "this run did nothing"
    )
    assert held_elsewhere.poll() is None  # the holder was not disturbed


def test_an_action_that_died_holding_the_lock_is_named_by_the_next(tmp_path: Path) -> None:
    script = (
        "import os, sys; from pathlib import Path; from memops.locking import action_lock\n"
        "with action_lock(Path(sys.argv[1]), 'backup.restore'):\n"
        "    os._exit(9)  # dies holding it: no cleanup runs\n"
    )
    died = subprocess.run([sys.executable, "-c", script, str(tmp_path)], check=False)
    assert died.returncode == 9

    with action_lock(tmp_path, "backup.create") as held:
        assert held.previous_unfinished is not None
        assert held.previous_unfinished.startswith("backup.restore pid ")
    with action_lock(tmp_path, "deploy") as held:
        assert held.previous_unfinished is None  # backup.create finished


def test_health_metrics_textfile_is_parseable_and_atomic(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from memops.health.cycle import evaluate_cycle
    from memops.health.metrics import TEXTFILE_NAME, write_textfile
    from memops.health.state import StoredState
    from memops.probes.result import ProbeResult, State

    results = {
        "redis": ProbeResult(State.FAILING, 3.0, ("connect_refused",), {"error": "refused"}),
        "qdrant": ProbeResult(State.HEALTHY, 2.0, ("ok",), {}),
    }
    snapshot, _ = evaluate_cycle(results, StoredState(), datetime(2026, 1, 2, tzinfo=UTC))
    path = write_textfile(snapshot, 'lo"cal', tmp_path)

    assert path == tmp_path / TEXTFILE_NAME
    assert os.stat(path).st_mode & 0o777 == 0o644
    lines = path.read_text().splitlines()
    assert 'memops_health_state{inventory="lo\\"cal",state="degraded"} 1' in lines
    assert 'memops_health_state{inventory="lo\\"cal",state="healthy"} 0' in lines
    assert 'memops_health_failure_streak{inventory="lo\\"cal"} 1' in lines
    assert 'memops_health_component_up{inventory="lo\\"cal",component="redis"} 0' in lines
    assert 'memops_health_component_up{inventory="lo\\"cal",component="qdrant"} 1' in lines
    assert 'memops_health_checked_timestamp_seconds{inventory="lo\\"cal"} 1767312000.000' in lines
    assert [p.name for p in tmp_path.iterdir()] == [TEXTFILE_NAME]


def test_a_child_started_by_the_holder_acts_under_its_lock(tmp_path: Path) -> None:
    script = (
        "import sys; from pathlib import Path; from memops.locking import action_lock\n"
        "with action_lock(Path(sys.argv[1]), 'backup.create'):\n"
        "    print('inside')\n"
    )
    with action_lock(tmp_path, "backup.restore"):
        child = subprocess.run(
            [sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True
        )
        assert child.returncode == 0 and child.stdout == "inside\n", child.stderr
        stranger = subprocess.run(
            [sys.executable, "-c", script, str(tmp_path)],
            capture_output=True,
            text=True,
            env={k: v for k, v in os.environ.items() if k != "MEMOPS_LOCK_TOKEN"},
        )
        assert stranger.returncode != 0 and "LockBusyError" in stranger.stderr
        assert "token" not in stranger.stderr  # the token is not shown to others
    assert "MEMOPS_LOCK_TOKEN" not in os.environ


EXAMPLE_VAULT_PASSWORD = "memops-example-vault"  # documented in README and in the vault files


@pytest.mark.parametrize("name", ["staging", "production"])
def test_example_vaults_open_with_the_documented_password_and_hold_every_secret(
    name: str, tmp_path: Path
) -> None:
    """Every vault_* variable an example's vars.yml needs is in its vault.yml and decrypts."""
    inventory = Path(__file__).resolve().parent.parent / "inventory" / name
    wanted = sorted(
        set(
            re.findall(
                r"\{\{ (vault_\w+) \}\}", (inventory / "group_vars/all/vars.yml").read_text()
            )
        )
    )
    assert "vault_postgresql_ops_password" in wanted
    password = tmp_path / "vault-pass"
    password.touch(mode=0o600)
    password.write_text(EXAMPLE_VAULT_PASSWORD + "\n")
    host = re.search(r"^\s+(\S+\.example\.internal):", (inventory / "hosts.yml").read_text(), re.M)
    assert host is not None
    done = subprocess.run(
        [
            str(Path(sys.executable).with_name("ansible")),
            "-i", str(inventory), host.group(1), "-o", "-m", "ansible.builtin.debug",
            "-a", "msg={{ [" + ", ".join(wanted) + "] | to_json }}",
            "--vault-password-file", str(password),
            "-e", f"ansible_python_interpreter={sys.executable}",
        ],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    values = json.loads(json.loads(done.stdout.split("=>", 1)[1])["msg"])
    assert len(values) == len(wanted) and all(isinstance(v, str) and len(v) >= 16 for v in values)
