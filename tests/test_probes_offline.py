"""Probes against real loopback sockets that need no service, plus their pure parts.

* a closed port: connection refused, reported fast;
* a port that accepts connections but never answers: the probe gives up near
  its timeout, and a whole health cycle stays bounded;
* a tiny HTTP server standing in for Qdrant's answers (401, 503, statuses).
"""

from __future__ import annotations

import argparse
import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from typing import ClassVar
from urllib.parse import unquote

import psycopg
import pytest
from loopback_http import serve

from memops.cli import probe as probe_cli
from memops.deploy.targets import PostgresTarget, QdrantTarget, RedisTarget
from memops.health.cycle import run_cycle
from memops.probes import probe_until_healthy
from memops.probes.errors import safe_message
from memops.probes.postgresql import _classify as classify_postgres
from memops.probes.postgresql import probe_postgresql
from memops.probes.qdrant import probe_qdrant
from memops.probes.redis import _assess as assess_redis_info
from memops.probes.redis import probe_redis
from memops.probes.result import ProbeResult, State

SECRET = "s3cret-value-never-shown"


def redis_target(port: int, **extra) -> RedisTarget:
    return RedisTarget(name="redis", host="127.0.0.1", port=port, password=SECRET, **extra)


def postgres_target(port: int) -> PostgresTarget:
    return PostgresTarget(
        name="postgresql",
        host="127.0.0.1",
        port=port,
        dbname="memops",
        user="memops_app",
        password=SECRET,
    )


def qdrant_target(url: str) -> QdrantTarget:
    return QdrantTarget(name="qdrant", url=url, api_key=SECRET)


@pytest.fixture
def closed_port() -> int:
    """A loopback port nobody listens on (bound once, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A loopback port that completes TCP handshakes (via the backlog) and never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield sock.getsockname()[1]


def assert_no_secret(result: ProbeResult) -> None:
    assert SECRET not in json.dumps(result.to_dict())


# --- connection refused ---------------------------------------------------------------


@pytest.mark.parametrize("kind", ["redis", "postgresql", "qdrant"])
def test_closed_port_is_connect_refused_fast(closed_port, kind):
    target = {
        "redis": redis_target(closed_port),
        "postgresql": postgres_target(closed_port),
        "qdrant": qdrant_target(f"http://127.0.0.1:{closed_port}"),
    }[kind]
    probe = {"redis": probe_redis, "postgresql": probe_postgresql, "qdrant": probe_qdrant}[kind]

    started = time.monotonic()
    result = probe(target, 2.0)

    assert time.monotonic() - started < 1.0
    assert result.state is State.FAILING
    assert result.reason_codes == ("connect_refused",)
    assert result.error
    assert_no_secret(result)


# --- a listener that never answers ------------------------------------------------------


def test_redis_probe_times_out_on_a_silent_listener(silent_port):
    started = time.monotonic()
    result = probe_redis(redis_target(silent_port), 0.5)

    assert result.state is State.FAILING
    assert result.reason_codes == ("timeout",)
    assert time.monotonic() - started < 1.5
    assert_no_secret(result)


def test_qdrant_probe_times_out_on_a_silent_listener(silent_port):
    started = time.monotonic()
    result = probe_qdrant(qdrant_target(f"http://127.0.0.1:{silent_port}"), 0.5)

    assert result.reason_codes == ("timeout",)
    assert time.monotonic() - started < 1.5


def test_postgresql_probe_times_out_on_a_silent_listener(silent_port):
    # libpq's connect_timeout has a floor of 2 s, whatever shorter budget is asked for.
    started = time.monotonic()
    result = probe_postgresql(postgres_target(silent_port), 0.5)

    assert result.reason_codes == ("timeout",)
    assert time.monotonic() - started < 4.0
    assert_no_secret(result)


def test_health_cycle_is_bounded_when_every_host_hangs(silent_port, tmp_path):
    timeout_s, retries = 1.0, 1
    targets = {
        "redis": redis_target(silent_port),
        "postgresql": postgres_target(silent_port),
        "qdrant": qdrant_target(f"http://127.0.0.1:{silent_port}"),
    }

    started = time.monotonic()
    snapshot = run_cycle(targets, tmp_path, timeout_s=timeout_s, retries=retries)
    elapsed = time.monotonic() - started

    # A boundedness check, not a speed target.
    assert elapsed < 3 * timeout_s * (retries + 1)
    for component in snapshot.components.values():
        assert component.reason_codes[0] == "timeout"
    assert snapshot.queue_depth == 3
    assert snapshot.last_cycle_failed


def test_a_hung_probe_is_abandoned_at_the_cycle_deadline(tmp_path):
    release = threading.Event()

    def hanging(target, timeout_s):
        release.wait(30)
        return ProbeResult(State.HEALTHY, 0.0, ("ok",), {})

    try:
        started = time.monotonic()
        snapshot = run_cycle(
            {"redis": redis_target(1)},
            tmp_path,
            timeout_s=0.2,
            retries=1,
            probes={"redis": hanging},
        )
        elapsed = time.monotonic() - started
    finally:
        release.set()

    assert elapsed < 3.0
    redis = snapshot.components["redis"]
    assert redis.reason_codes == ("timeout",)
    assert "did not finish" in redis.details["error"]


# --- Qdrant over HTTP -----------------------------------------------------------------


class FakeQdrant(BaseHTTPRequestHandler):
    """Answers like Qdrant would; ``fake_qdrant`` sets the class attributes per test."""

    readyz_status = 200
    collections_status = 200
    collection_states: ClassVar[dict[str, str]] = {}
    requests: ClassVar[list[tuple[str, str | None]]] = []  # (path, api-key header)

    def do_GET(self) -> None:
        self.requests.append((self.path, self.headers.get("api-key")))
        if self.path == "/readyz":
            self._reply(self.readyz_status, "all shards are ready", "text/plain")
        elif self.path == "/collections":
            names = [{"name": name} for name in self.collection_states]
            body = {"result": {"collections": names}, "status": "ok", "time": 0.0}
            self._reply(self.collections_status, json.dumps(body), "application/json")
        elif self.path.startswith("/collections/"):
            name = unquote(self.path.removeprefix("/collections/"))
            body = {"result": {"status": self.collection_states[name]}, "status": "ok"}
            self._reply(200, json.dumps(body), "application/json")
        else:
            self._reply(404, "{}", "application/json")

    def _reply(self, status: int, body: str, content_type: str) -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def fake_qdrant(**settings: object) -> Iterator[type[FakeQdrant]]:
    """Serve a FakeQdrant subclass on a free loopback port; its ``url`` is set on it."""
    with serve(FakeQdrant, **settings) as handler:
        yield handler


def test_qdrant_401_is_auth_failed():
    with fake_qdrant(collections_status=401) as server:
        result = probe_qdrant(qdrant_target(server.url), 2.0)

    assert result.state is State.FAILING
    assert result.reason_codes == ("auth_failed",)
    assert_no_secret(result)


def test_qdrant_503_on_readyz_is_not_ready():
    with fake_qdrant(readyz_status=503) as server:
        result = probe_qdrant(qdrant_target(server.url), 2.0)
    assert result.reason_codes == ("not_ready",)


def test_qdrant_healthy_lists_collections_and_sends_the_key_only_where_needed():
    states = {"memory_semantic": "green", "memory/odd name": "green"}
    with fake_qdrant(collection_states=states) as server:
        result = probe_qdrant(qdrant_target(server.url + "/"), 2.0)

    assert result.state is State.HEALTHY
    assert result.reason_codes == ("ok",)
    assert result.details["collections"] == states
    assert result.details["collection_count"] == 2
    assert_no_secret(result)
    assert server.requests == [
        ("/readyz", None),
        ("/collections", SECRET),
        ("/collections/memory_semantic", SECRET),
        ("/collections/memory%2Fodd%20name", SECRET),
    ]


@pytest.mark.parametrize(
    ("status", "state"),
    [("yellow", State.DEGRADED), ("grey", State.DEGRADED), ("red", State.FAILING)],
)
def test_qdrant_collection_not_green(status, state):
    with fake_qdrant(collection_states={"good": "green", "bad": status}) as server:
        result = probe_qdrant(qdrant_target(server.url), 2.0)

    assert result.state is state
    assert result.reason_codes == ("collection_not_green",)
    assert result.details["collections"]["bad"] == status


def test_https_to_a_plain_http_server_is_tls_error():
    with fake_qdrant() as server:
        result = probe_qdrant(qdrant_target(server.url.replace("http://", "https://")), 2.0)
    assert result.reason_codes == ("tls_error",)


# --- Redis INFO assessment (pure) -------------------------------------------------------

HEALTHY_INFO = {
    "role": "master",
    "redis_version": "7.0.15",
    "used_memory": 50,
    "maxmemory": 100,
    "rdb_last_bgsave_status": "ok",
    "server_time_usec": 10_000 * 1_000_000,
    "rdb_last_save_time": 10_000 - 60,
    "rdb_changes_since_last_save": 3,
    "connected_slaves": 0,
}


def assess(**changes) -> ProbeResult:
    target = redis_target(16379, rpo_seconds=900, maxmemory_warn_ratio=0.9)
    return assess_redis_info({**HEALTHY_INFO, **changes}, target, time.perf_counter())


def test_redis_info_healthy():
    result = assess()
    assert (result.state, result.reason_codes) == (State.HEALTHY, ("ok",))
    assert result.details["memory_ratio"] == 0.5
    assert result.details["rdb_last_save_age_s"] == 60


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"used_memory": 95}, "memory_near_max"),
        ({"rdb_last_bgsave_status": "err"}, "rdb_save_failed"),
        ({"rdb_last_save_time": 10_000 - 1801}, "rdb_save_stale"),
        ({"role": "slave", "master_link_status": "down"}, "replica_link_down"),
    ],
)
def test_redis_soft_problems_degrade(changes, code):
    result = assess(**changes)
    assert result.state is State.DEGRADED
    assert result.reason_codes == (code,)


def test_redis_old_save_without_pending_changes_is_not_stale():
    assert assess(rdb_last_save_time=0, rdb_changes_since_last_save=0).state is State.HEALTHY


def test_redis_without_maxmemory_has_no_ratio():
    result = assess(maxmemory=0)
    assert result.details["memory_ratio"] is None
    assert result.state is State.HEALTHY


# --- PostgreSQL error classification (pure) -----------------------------------------------


@pytest.mark.parametrize(
    ("message", "code"),
    [
        ('connection to server at "db", port 5432 failed: FATAL:  password authentication '
         'failed for user "memops_app"', "auth_failed"),
        ('FATAL:  no pg_hba.conf entry for host "10.0.0.9"', "auth_failed"),
        ("FATAL:  the database system is starting up", "not_ready"),
        ("failed to resolve host 'db.invalid': [Errno -2] Name or service not known", "dns_error"),
        ("connection timeout expired", "timeout"),  # libpq: TCP or handshake, cannot tell
        ('connection to server at "10.0.0.9", port 5432 failed: No route to host',
         "host_unreachable"),
        ("server does not support SSL, but SSL was required", "tls_error"),
        ('FATAL:  database "nope" does not exist', "unexpected_error"),
    ],
)  # fmt: skip
def test_postgresql_messages_map_to_reason_codes(message, code):
    assert classify_postgres(psycopg.OperationalError(message))[0] == code


def test_safe_message_masks_secrets_and_keeps_one_line():
    text = safe_message(f"bad password {SECRET}\nsecond line", [SECRET, None])
    assert text == "bad password ***"


# --- python -m memops probe ---------------------------------------------------------------


def run_probe_command(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    probe_cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.handler(args)


def test_probe_command_reports_a_failure(closed_port, monkeypatch, capsys):
    target = {"kind": "redis", "host": "127.0.0.1", "port": closed_port, "password": SECRET}
    monkeypatch.setenv("MEMOPS_PROBE_TARGET", json.dumps(target))

    code = run_probe_command(["probe", "redis", "--timeout", "0.5", "--retries", "0"])

    out, err = capsys.readouterr()
    assert code == 1
    printed = json.loads(out)
    assert (printed["state"], printed["reason_codes"]) == ("failing", ["connect_refused"])
    assert err.strip() == (
        f"redis probe failed at 127.0.0.1:{closed_port}: connect_refused (connection refused)"
    )
    assert SECRET not in out + err


def test_probe_command_healthy_and_require_healthy(monkeypatch, capsys):
    with fake_qdrant(collection_states={"a": "yellow"}) as server:
        target = {"url": server.url, "api_key": SECRET}
        monkeypatch.setenv("MEMOPS_PROBE_TARGET", json.dumps(target))
        lenient = run_probe_command(["probe", "qdrant"])
        strict = run_probe_command(["probe", "qdrant", "--require-healthy"])

    assert (lenient, strict) == (0, 1)
    assert "qdrant probe degraded at" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (None, "MEMOPS_PROBE_TARGET is not set"),
        ("{nope", "MEMOPS_PROBE_TARGET: invalid JSON"),
        ('{"kind": "qdrant", "url": "http://x"}', "but the command probes 'redis'"),
        ('{"host": "h", "port": 0}', "MEMOPS_PROBE_TARGET.port: must be at least 1"),
    ],
)
def test_probe_command_rejects_a_bad_target(monkeypatch, capsys, env, message):
    if env is None:
        monkeypatch.delenv("MEMOPS_PROBE_TARGET", raising=False)
    else:
        monkeypatch.setenv("MEMOPS_PROBE_TARGET", env)

    assert run_probe_command(["probe", "redis"]) == 2
    assert message in capsys.readouterr().err


def test_wait_keeps_probing_until_healthy():
    answers = iter(
        [
            ProbeResult(State.FAILING, 1.0, ("connect_refused",), {"error": "refused"}),
            ProbeResult(State.FAILING, 1.0, ("not_ready",), {"error": "loading"}),
            ProbeResult(State.HEALTHY, 1.0, ("ok",), {}),
        ]
    )

    result = probe_until_healthy(
        redis_target(1),
        timeout_s=0.1,
        retries=0,
        wait_s=5,
        poll_interval_s=0.01,
        probe=lambda target, timeout_s: next(answers),
    )
    assert result.state is State.HEALTHY


def test_wait_gives_up_with_the_last_result(closed_port):
    started = time.monotonic()
    result = probe_until_healthy(
        redis_target(closed_port), timeout_s=0.2, retries=0, wait_s=0.5, poll_interval_s=0.1
    )
    assert result.reason_codes == ("connect_refused",)
    assert time.monotonic() - started < 2.0


# --- a host that does not answer at all ----------------------------------------------------


def test_no_route_to_the_host_is_host_unreachable():
    import errno

    from memops.probes.errors import classify_socket_error

    error = OSError(errno.EHOSTUNREACH, "No route to host")
    try:
        raise RuntimeError("client error") from error
    except RuntimeError as wrapped:
        assert classify_socket_error(wrapped) == ("host_unreachable", "No route to host")


def test_a_redis_connect_timeout_is_host_unreachable_and_a_read_timeout_is_not():
    import redis.exceptions as redis_errors

    from memops.probes.redis import _classify as classify_redis_error

    assert classify_redis_error(redis_errors.TimeoutError("Timeout connecting to server"))[0] == (
        "host_unreachable"
    )
    assert classify_redis_error(redis_errors.TimeoutError("Timeout reading from socket"))[0] == (
        "timeout"
    )
