"""Redis over TLS, deployed by the project's redis role (tests/inventories/tls, port 39679).

Only the redis play runs (`--tags redis`), into a state directory of this module's own.
With redis_tls_enabled and redis_tls_port 0 the instance serves TLS on redis_port and
nothing else: clients verify it with the CA the role generated (copied to the state
directory), a plain-text client is refused.
"""

from __future__ import annotations

import dataclasses
import socket
import ssl
from pathlib import Path

import pytest
import redis
from integration_helpers import INVENTORIES, Run, assert_redis_monitor_is_least_privilege, invoke

from memops.clients import redis_client
from memops.deploy.targets import RedisTarget, load_targets

pytestmark = pytest.mark.integration

TLS_INVENTORY = str(INVENTORIES / "tls")
PORT = 39679


@pytest.fixture(scope="module")
def tls_state(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Run]:
    state_dir = tmp_path_factory.mktemp("redis-tls-state")
    run = invoke(
        "deploy",
        "--inventory",
        TLS_INVENTORY,
        "--tags",
        "redis",
        "--json",
        env={"MEMOPS_STATE_DIR": str(state_dir)},
    )
    assert run.returncode == 0, f"deploy failed: {run.stderr.strip()}\n{run.stdout[-3000:]}"
    return state_dir, run


@pytest.fixture(scope="module")
def tls_target(tls_state: tuple[Path, Run]) -> RedisTarget:
    target = load_targets(tls_state[0]).components["redis"]
    assert isinstance(target, RedisTarget)
    return target


def test_the_target_is_tls_with_the_generated_ca(
    tls_state: tuple[Path, Run], tls_target: RedisTarget
) -> None:
    assert tls_target.tls is True
    assert tls_target.port == PORT
    assert tls_target.ca_file is not None
    ca = Path(tls_target.ca_file)
    assert ca.parent == tls_state[0] / "tls"
    assert ca.read_text(encoding="ascii").startswith("-----BEGIN CERTIFICATE-----")


def test_memops_client_round_trips_over_tls(tls_target: RedisTarget) -> None:
    client = redis_client(tls_target, timeout_s=5)
    value = b"\x00tls\xffround-trip"
    client.set("memops-tls-test:key", value, ex=60)
    assert client.get("memops-tls-test:key") == value
    assert client.connection_pool.connection_class is redis.SSLConnection


def test_a_rediss_url_with_the_generated_ca_is_verified(tls_target: RedisTarget) -> None:
    url = f"rediss://:{tls_target.password}@{tls_target.host}:{PORT}/0"
    client = redis.Redis.from_url(
        url, ssl_ca_certs=tls_target.ca_file, ssl_cert_reqs="required", socket_timeout=5
    )
    assert client.ping() is True
    assert client.info("server")["tcp_port"] == PORT


def test_the_server_certificate_does_not_verify_without_the_ca(tls_target: RedisTarget) -> None:
    """Only the generated CA vouches for the server: the system trust store does not."""
    client = redis_client(dataclasses.replace(tls_target, ca_file=None), timeout_s=5)
    with pytest.raises(redis.ConnectionError, match=r"(?i)certificate verify failed"):
        client.ping()


def test_a_plain_text_connection_is_refused(tls_target: RedisTarget) -> None:
    client = redis_client(dataclasses.replace(tls_target, tls=False, ca_file=None), timeout_s=5)
    with pytest.raises(redis.ConnectionError):
        client.ping()


def test_a_raw_tls_handshake_offers_tls_1_2_or_later(tls_target: RedisTarget) -> None:
    context = ssl.create_default_context(cafile=tls_target.ca_file)
    with (
        socket.create_connection((tls_target.host, PORT), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=tls_target.host) as tls,
    ):
        assert tls.version() in {"TLSv1.2", "TLSv1.3"}


def test_health_probes_redis_over_tls(tls_state: tuple[Path, Run]) -> None:
    run = invoke(
        "health",
        "--inventory",
        TLS_INVENTORY,
        "--json",
        env={"MEMOPS_STATE_DIR": str(tls_state[0])},
    )
    snapshot = run.json()
    assert snapshot["components"]["redis"]["state"] == "healthy", snapshot["components"]["redis"]


def test_the_monitor_user_reads_statistics_only_over_tls(
    tls_state: tuple[Path, Run], tls_target: RedisTarget
) -> None:
    assert_redis_monitor_is_least_privilege(tls_target, tls_state[0])
