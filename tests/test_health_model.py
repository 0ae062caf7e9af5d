"""The health model with fake probes: streaks, stack state, queue depth, persistence.

No network and no services: every probe here is a plain function.
"""

from __future__ import annotations

import json
import os
import stat
import threading
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from memops import files
from memops.deploy.targets import (
    PostgresTarget,
    QdrantTarget,
    RedisTarget,
    Targets,
    TargetsError,
    load_targets,
)
from memops.files import write_private_atomic
from memops.health.cycle import FAILURE_STREAK_THRESHOLD, evaluate_cycle, run_cycle
from memops.health.state import (
    EVENTS_FILE,
    STATE_FILE,
    HealthStateError,
    StoredState,
    load_state,
)
from memops.ops.health import quarantine_report, unfinished_findings
from memops.probes import probe_once
from memops.probes.result import (
    QUARANTINE_PARTIAL,
    RELEASE_PARTIAL,
    ProbeResult,
    State,
    with_soft_finding,
)
from memops.quarantine.state import in_force, unfinished

NOW = datetime(2026, 11, 23, 1, 0, 0, tzinfo=UTC)

TARGETS = {
    "redis": RedisTarget(name="redis", host="127.0.0.1", port=16379, password="redis-secret"),
    "postgresql": PostgresTarget(
        name="postgresql",
        host="127.0.0.1",
        port=15432,
        dbname="memops",
        user="memops_app",
        password="pg-secret",
    ),
    "qdrant": QdrantTarget(name="qdrant", url="http://127.0.0.1:16333", api_key="qdrant-secret"),
}

HEALTHY = ProbeResult(State.HEALTHY, 1.0, ("ok",), {})
REFUSED = ProbeResult(State.FAILING, 1.0, ("connect_refused",), {"error": "connection refused"})
NEAR_MAX = ProbeResult(State.DEGRADED, 1.0, ("memory_near_max",), {"memory_ratio": 0.95})
QUARANTINING = {"action": "quarantine", "started": "2026-11-23T00:59:00+00:00", "actor": "sre@h"}


def fixed(result: ProbeResult) -> Callable[[object, float], ProbeResult]:
    return lambda target, timeout_s: result


def sequence(results: Iterable[ProbeResult]) -> Callable[[object, float], ProbeResult]:
    """A probe returning ``results`` one per call (the last one repeats)."""
    remaining = list(results)

    def probe(target: object, timeout_s: float) -> ProbeResult:
        return remaining.pop(0) if len(remaining) > 1 else remaining[0]

    return probe


def probes(redis=HEALTHY, postgresql=HEALTHY, qdrant=HEALTHY):
    """Probe functions per kind; each argument is a ProbeResult or a probe function."""
    chosen = {"redis": redis, "postgresql": postgresql, "qdrant": qdrant}
    return {kind: fixed(p) if isinstance(p, ProbeResult) else p for kind, p in chosen.items()}


def cycle(state_dir: Path, retries: int = 1, **kinds):
    return run_cycle(
        TARGETS,
        state_dir,
        timeout_s=1.0,
        retries=retries,
        now=NOW,
        probes=probes(**kinds),
        retry_delay_s=0,
    )


def events(state_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (state_dir / EVENTS_FILE).read_text().splitlines()]


# --- the streak model -------------------------------------------------------------


def test_failing_probe_is_degraded_until_the_streak_reaches_the_threshold(tmp_path):
    assert FAILURE_STREAK_THRESHOLD == 3

    first = cycle(tmp_path, redis=REFUSED)
    assert first.components["redis"].state is State.DEGRADED
    assert first.state is State.DEGRADED
    assert (first.failure_streak, first.last_cycle_failed, first.queue_depth) == (1, True, 1)
    assert first.cycle_reason_codes == (
        "retry_attempted",
        "case_processing_failed",
        "retryable_failures_observed",
    )

    second = cycle(tmp_path, redis=REFUSED)
    assert second.components["redis"].state is State.DEGRADED
    assert second.failure_streak == 2

    third = cycle(tmp_path, redis=REFUSED)
    assert third.components["redis"].state is State.FAILING
    assert third.state is State.FAILING
    assert third.failure_streak == 3
    assert "failure_streak_threshold_reached" in third.cycle_reason_codes
    assert "retryable_failures_observed" not in third.cycle_reason_codes
    assert third.exit_code == 2
    assert third.components["postgresql"].state is State.HEALTHY

    stored = load_state(tmp_path)
    assert stored.health_state == "failing"
    assert stored.component_failure_streaks == {"redis": 3, "postgresql": 0, "qdrant": 0}


def test_healthy_cycle_resets_the_streak_and_records_recovery(tmp_path):
    for _ in range(3):
        cycle(tmp_path, redis=REFUSED)

    snapshot = cycle(tmp_path)

    assert snapshot.state is State.HEALTHY
    assert (snapshot.failure_streak, snapshot.last_cycle_failed, snapshot.queue_depth) == (
        0,
        False,
        0,
    )
    assert snapshot.cycle_reason_codes == ("recovered", "healthy_cycle")
    stored = load_state(tmp_path)
    assert stored.component_failure_streaks["redis"] == 0
    assert stored.last_healthy_at == "2026-11-23T01:00:00Z"
    assert stored.last_failure_at == "2026-11-23T01:00:00Z"

    # "recovered" marks only the first good cycle after failures
    assert cycle(tmp_path).cycle_reason_codes == ("healthy_cycle",)


def test_a_retry_that_succeeds_does_not_fail_the_cycle(tmp_path):
    snapshot = cycle(tmp_path, redis=sequence([REFUSED, HEALTHY]))

    redis = snapshot.components["redis"]
    assert redis.state is State.HEALTHY
    assert redis.reason_codes == ("ok", "retry_attempted")
    assert redis.details["attempts"] == 2
    assert redis.details["earlier_failures"] == ["connect_refused"]
    assert snapshot.failure_streak == 0
    assert snapshot.cycle_reason_codes == ("retry_attempted", "healthy_cycle")


def test_without_retries_a_probe_runs_once(tmp_path):
    calls = []

    def counting(target, timeout_s):
        calls.append(target.name)
        return REFUSED

    snapshot = cycle(tmp_path, retries=0, redis=counting)
    assert calls == ["redis"]
    assert "retry_attempted" not in snapshot.cycle_reason_codes


def test_stack_state_is_the_worst_component_state(tmp_path):
    snapshot = cycle(tmp_path, qdrant=NEAR_MAX)

    assert snapshot.state is State.DEGRADED
    assert snapshot.components["qdrant"].state is State.DEGRADED
    # a soft problem is not a probe failure: no streak, nothing queued
    assert (snapshot.failure_streak, snapshot.queue_depth) == (0, 0)
    assert snapshot.cycle_reason_codes == ("degraded_cycle",)
    assert snapshot.exit_code == 1


def test_soft_degradation_does_not_block_recovery(tmp_path):
    cycle(tmp_path, redis=REFUSED)
    snapshot = cycle(tmp_path, redis=NEAR_MAX)
    assert snapshot.failure_streak == 0
    assert snapshot.cycle_reason_codes == ("recovered", "degraded_cycle")


def test_queue_depth_counts_components_still_failing(tmp_path):
    snapshot = cycle(tmp_path, redis=REFUSED, qdrant=REFUSED)
    assert snapshot.queue_depth == 2
    assert load_state(tmp_path).queue_depth == 2


def test_stack_fails_at_threshold_even_when_different_components_fail():
    state = StoredState()
    for failing_kind in ("redis", "postgresql", "qdrant"):
        results = {kind: HEALTHY for kind in TARGETS}
        results[failing_kind] = REFUSED
        snapshot, state = evaluate_cycle(results, state, NOW)

    # each component failed once, but the stack failed three cycles in a row
    assert snapshot.components["qdrant"].state is State.DEGRADED
    assert snapshot.failure_streak == 3
    assert snapshot.state is State.FAILING


def test_components_removed_from_targets_drop_out_of_the_state():
    previous = StoredState(component_failure_streaks={"redis": 2, "old-redis": 5})
    _, stored = evaluate_cycle({"redis": REFUSED}, previous, NOW)
    assert stored.component_failure_streaks == {"redis": 3}


# --- snapshot and events format -----------------------------------------------------


def test_snapshot_dict_has_exactly_the_documented_keys(tmp_path):
    snapshot = cycle(tmp_path, redis=REFUSED).to_dict()

    assert set(snapshot) == {
        "state",
        "components",
        "failure_streak",
        "last_cycle_failed",
        "queue_depth",
        "checked_at",
    }
    assert snapshot["checked_at"] == "2026-11-23T01:00:00Z"
    assert set(snapshot["components"]) == {"redis", "postgresql", "qdrant"}
    for component in snapshot["components"].values():
        assert set(component) == {"state", "latency_ms", "reason_codes", "details"}
    assert snapshot["components"]["redis"]["reason_codes"] == ["connect_refused", "retry_attempted"]
    json.dumps(snapshot)  # serialisable as is


def test_each_cycle_appends_one_event_line(tmp_path):
    cycle(tmp_path, redis=REFUSED)
    cycle(tmp_path)

    lines = events(tmp_path)
    assert len(lines) == 2
    assert set(lines[0]) == {
        "at",
        "state",
        "reason_codes",
        "failure_streak",
        "queue_depth",
        "components",
    }
    assert lines[0]["components"]["redis"] == ["connect_refused", "retry_attempted"]
    assert lines[0]["reason_codes"] == [
        "retry_attempted",
        "case_processing_failed",
        "retryable_failures_observed",
    ]
    assert lines[1]["reason_codes"] == ["recovered", "healthy_cycle"]
    assert lines[1]["failure_streak"] == 0


def test_naive_now_is_taken_as_utc(tmp_path):
    snapshot = run_cycle(TARGETS, tmp_path, now=datetime(2026, 1, 2, 3, 4, 5), probes=probes())
    assert snapshot.checked_at == "2026-01-02T03:04:05Z"


# --- persistence --------------------------------------------------------------------


def test_state_file_is_private_and_complete(tmp_path):
    state_dir = tmp_path / "state"  # created on first use
    cycle(state_dir, redis=REFUSED)

    path = state_dir / STATE_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE((state_dir / EVENTS_FILE).stat().st_mode) == 0o600
    assert set(json.loads(path.read_text())) == {
        "health_state",
        "failure_streak",
        "last_cycle_failed",
        "queue_depth",
        "last_checked_at",
        "last_healthy_at",
        "last_failure_at",
        "component_failure_streaks",
    }
    leftovers = [p.name for p in state_dir.iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []


def test_atomic_write_keeps_the_old_file_when_replacing_fails(tmp_path, monkeypatch):
    path = tmp_path / STATE_FILE
    write_private_atomic(path, '{"old": true}\n')

    def broken_replace(src, dst):
        raise OSError("disk on fire")

    monkeypatch.setattr(files.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk on fire"):
        write_private_atomic(path, '{"new": true}\n')

    assert json.loads(path.read_text()) == {"old": True}
    assert [p.name for p in tmp_path.iterdir()] == [STATE_FILE]


def test_concurrent_cycles_do_not_lose_updates(tmp_path):
    runs = 8
    threads = [
        threading.Thread(target=cycle, args=(tmp_path,), kwargs={"redis": REFUSED})
        for _ in range(runs)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert load_state(tmp_path).failure_streak == runs
    assert len(events(tmp_path)) == runs


def test_corrupt_state_file_is_a_clear_error(tmp_path):
    (tmp_path / STATE_FILE).write_text("{not json")
    with pytest.raises(HealthStateError, match="move it aside"):
        load_state(tmp_path)


def test_missing_state_file_means_no_cycle_yet(tmp_path):
    assert load_state(tmp_path) == StoredState()


# --- probe dispatch -------------------------------------------------------------------


def test_a_crashing_probe_becomes_unexpected_error():
    def crashing(target, timeout_s):
        raise ZeroDivisionError("bug")

    result = probe_once(TARGETS["redis"], 1.0, probe=crashing)
    assert result.state is State.FAILING
    assert result.reason_codes == ("unexpected_error",)


# --- targets.json ---------------------------------------------------------------------

VALID_TARGETS = {
    "inventory": "local",
    "generated_at": "2026-11-23T01:00:00Z",
    "components": {
        "redis": {
            "kind": "redis",
            "host": "127.0.0.1",
            "port": 16379,
            "username": None,
            "password": "redis-secret",
            "tls": False,
            "ca_file": None,
            "rpo_seconds": 900,
            "maxmemory_warn_ratio": 0.9,
        },
        "postgresql": {
            "kind": "postgresql",
            "host": "127.0.0.1",
            "port": 15432,
            "dbname": "memops",
            "user": "memops_app",
            "password": "pg-secret",
            "sslmode": "prefer",
            "expected_schema_version": 1,
            "max_replication_lag_seconds": 30,
        },
        "qdrant": {
            "kind": "qdrant",
            "url": "http://127.0.0.1:16333",
            "api_key": "qdrant-secret",
            "verify_tls": True,
        },
        "redis@10.0.0.5:6379": {
            "kind": "redis",
            "host": "10.0.0.5",
            "port": 6379,
            "password": "other-secret",
        },
    },
}


def write_targets(directory: Path, data: object, mode: int = 0o600) -> Path:
    path = directory / "targets.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    os.chmod(path, mode)
    return path


def test_load_targets_from_a_state_directory(tmp_path):
    write_targets(tmp_path, VALID_TARGETS)

    targets = load_targets(tmp_path)

    assert targets.inventory == "local"
    assert list(targets.components) == ["redis", "postgresql", "qdrant", "redis@10.0.0.5:6379"]
    redis = targets.components["redis"]
    assert isinstance(redis, RedisTarget)
    assert (redis.host, redis.port, redis.password, redis.endpoint) == (
        "127.0.0.1",
        16379,
        "redis-secret",
        "127.0.0.1:16379",
    )
    postgres = targets.components["postgresql"]
    assert isinstance(postgres, PostgresTarget)
    assert postgres.expected_schema_version == 1
    other = targets.components["redis@10.0.0.5:6379"]
    assert (other.name, other.rpo_seconds, other.tls) == ("redis@10.0.0.5:6379", 900, False)


def test_secrets_are_absent_from_repr(tmp_path):
    write_targets(tmp_path, VALID_TARGETS)
    targets = load_targets(tmp_path / "targets.json")

    text = repr(targets) + str(targets) + "".join(map(repr, targets.components.values()))
    for secret in ("redis-secret", "pg-secret", "qdrant-secret", "other-secret"):
        assert secret not in text
    assert "127.0.0.1" in text  # the rest is still there to help debugging


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_targets_readable_by_others_are_refused(tmp_path, mode):
    write_targets(tmp_path, VALID_TARGETS, mode=mode)
    with pytest.raises(TargetsError, match=r"targets\.json: refusing .*chmod 600"):
        load_targets(tmp_path)


def test_missing_targets_file_names_the_file(tmp_path):
    with pytest.raises(TargetsError, match=r"targets\.json: targets file not found"):
        load_targets(tmp_path)


def test_malformed_json_names_file_and_position(tmp_path):
    write_targets(tmp_path, '{"components": {\n  "redis": }\n}')
    with pytest.raises(TargetsError, match=r"targets\.json: invalid JSON at line 2"):
        load_targets(tmp_path)


def edited(path: list[str], value: object) -> dict:
    data = json.loads(json.dumps(VALID_TARGETS))
    node = data
    for key in path[:-1]:
        node = node[key]
    if value is ...:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return data


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (["components", "redis", "port"], ..., r"components\.redis\.port: missing"),
        (["components", "redis", "port"], "16379", r"components\.redis\.port: expected an int"),
        (["components", "redis", "port"], 70000, r"components\.redis\.port: must be at most"),
        (["components", "redis", "tls"], "yes", r"components\.redis\.tls: expected true or"),
        (["components", "postgresql", "sslmode"], "maybe", r"postgresql\.sslmode: expected one"),
        (["components", "qdrant", "url"], "127.0.0.1:6333", r"components\.qdrant\.url: expected"),
        (["components", "qdrant", "kind"], "mongodb", r"components\.qdrant\.kind: expected one"),
        (["components", "redis"], [], r"components\.redis: expected a JSON object"),
        (["components"], {}, r"components: expected a non-empty"),
    ],
)
def test_malformed_targets_name_the_field(tmp_path, path, value, message):
    write_targets(tmp_path, edited(path, value))
    with pytest.raises(TargetsError, match=message) as caught:
        load_targets(tmp_path)
    assert str(tmp_path / "targets.json") in str(caught.value)


def test_a_bad_secret_field_does_not_echo_its_value(tmp_path):
    write_targets(tmp_path, edited(["components", "redis", "password"], ["redis-secret"]))
    with pytest.raises(TargetsError) as caught:
        load_targets(tmp_path)
    assert "redis-secret" not in str(caught.value)


# --- soft problems from outside the probes: unfinished quarantines --------------------


def test_an_unfinished_quarantine_degrades_the_open_tiers_without_counting_as_a_failure(tmp_path):
    record = {
        "acme": {"tiers": ["postgresql", "redis"], "unfinished": {"qdrant": QUARANTINING}},
        "beta": {
            "tiers": ["redis"],
            "unfinished": {"redis": {**QUARANTINING, "action": "release"}},
        },
    }
    soft = unfinished_findings(Targets(None, None, TARGETS), record)
    assert soft == {
        "qdrant": {QUARANTINE_PARTIAL: {QUARANTINE_PARTIAL: ["acme"]}},
        "redis": {RELEASE_PARTIAL: {RELEASE_PARTIAL: ["beta"]}},
    }
    snapshot = run_cycle(TARGETS, tmp_path, now=NOW, probes=probes(), soft=soft, retry_delay_s=0)
    qdrant = snapshot.components["qdrant"]
    assert (qdrant.state, qdrant.reason_codes) == (State.DEGRADED, (QUARANTINE_PARTIAL,))
    assert qdrant.details[QUARANTINE_PARTIAL] == ["acme"]
    assert snapshot.components["redis"].reason_codes == (RELEASE_PARTIAL,)
    assert snapshot.components["postgresql"].state is State.HEALTHY
    assert (snapshot.state, snapshot.exit_code) == (State.DEGRADED, 1)
    assert (snapshot.failure_streak, snapshot.last_cycle_failed, snapshot.queue_depth) == (
        0,
        False,
        0,
    )
    assert snapshot.cycle_reason_codes == ("degraded_cycle",)
    assert load_state(tmp_path).health_state == "degraded"


def test_a_record_without_unfinished_runs_is_complete_as_the_previous_version_wrote_it():
    previous = {  # quarantine.json as the version before per-tier records wrote it
        "acme": {
            "tiers": ["postgresql", "qdrant", "redis"],
            "since": "2026-11-20T10:00:00+00:00",
            "actor": "sre@host",
            "qdrant_moves": {"memory_chat": "memops-quarantine-0123"},
        }
    }
    assert unfinished(previous) == {}
    assert unfinished_findings(Targets(None, None, TARGETS), previous) == {}
    assert in_force(previous) == previous
    assert quarantine_report(previous) == (
        {"quarantined": {"acme": ["postgresql", "qdrant", "redis"]}},
        [
            "quarantined namespaces (1): 'acme' (postgresql, qdrant, redis, since "
            "2026-11-20T10:00:00+00:00); `invoke rebuild.release NS` lifts one"
        ],
    )


def test_a_namespace_no_tier_of_which_is_done_is_not_listed_as_quarantined():
    record = {"o'brien": {"tiers": [], "unfinished": {"redis": QUARANTINING}}}
    report, lines = quarantine_report(record)
    assert "quarantined" not in report
    assert report["quarantine_unfinished"] == {
        "o'brien": {"quarantined": [], "open": {"redis": QUARANTINING}}
    }
    assert lines == [
        'unfinished quarantine of namespace "o\'brien": still open in redis; '
        "`invoke rebuild.quarantine 'o'\"'\"'brien' --tier redis` finishes it"
    ]


def test_a_soft_finding_leaves_a_failing_probe_failing():
    result = with_soft_finding(REFUSED, QUARANTINE_PARTIAL, {QUARANTINE_PARTIAL: ["acme"]})
    assert result.failed
    assert result.reason_codes == ("connect_refused", QUARANTINE_PARTIAL)
    assert result.details == {"error": "connection refused", QUARANTINE_PARTIAL: ["acme"]}
