"""The generic HTTP probe (kind ``http``) against loopback sockets and a tiny HTTP server.

Used for Prometheus, Alertmanager and the exporters: GET one URL, expect one status.
"""

from __future__ import annotations

import argparse
import json
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import ClassVar

import pytest
from loopback_http import serve

from memops.cli import probe as probe_cli
from memops.deploy.targets import HttpTarget, TargetsError, parse_target
from memops.deploy.targets_file import merge_targets
from memops.health.cycle import run_cycle
from memops.probes import PROBES
from memops.probes.http import probe_http
from memops.probes.result import ProbeResult, State

SECRET = "s3cret-token-never-shown"


def http_target(url: str, **extra) -> HttpTarget:
    return HttpTarget(name="prometheus", url=url, **extra)


def assert_no_secret(result: ProbeResult) -> None:
    assert SECRET not in json.dumps(result.to_dict())


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def silent_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield sock.getsockname()[1]


class FakeService(BaseHTTPRequestHandler):
    """Answers every GET with ``status``; records (path, Authorization, api-key) per request."""

    status = 200
    body = "Prometheus Server is Ready.\n"
    location = ""
    requests: ClassVar[list[tuple[str, str | None, str | None]]] = []

    def do_GET(self) -> None:
        self.requests.append(
            (self.path, self.headers.get("Authorization"), self.headers.get("api-key"))
        )
        data = self.body.encode()
        self.send_response(self.status)
        if self.location:
            self.send_header("Location", self.location)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def fake_service(**settings: object) -> Iterator[type[FakeService]]:
    with serve(FakeService, **settings) as handler:
        yield handler


def test_http_is_a_registered_probe_kind():
    assert PROBES["http"] is probe_http


def test_closed_port_is_connect_refused_fast(closed_port):
    started = time.monotonic()
    result = probe_http(http_target(f"http://127.0.0.1:{closed_port}/-/ready"), 2.0)

    assert time.monotonic() - started < 1.0
    assert result.state is State.FAILING
    assert result.reason_codes == ("connect_refused",)
    assert result.error


def test_silent_listener_times_out(silent_port):
    started = time.monotonic()
    result = probe_http(http_target(f"http://127.0.0.1:{silent_port}/-/ready"), 0.5)

    assert result.reason_codes == ("timeout",)
    assert time.monotonic() - started < 1.5


def test_200_is_healthy_and_credentials_go_in_headers():
    with fake_service() as server:
        target = http_target(server.url + "/-/ready", bearer_token=SECRET, api_key=SECRET)
        result = probe_http(target, 2.0)

    assert (result.state, result.reason_codes) == (State.HEALTHY, ("ok",))
    assert result.details == {"status": 200}
    assert server.requests == [("/-/ready", f"Bearer {SECRET}", SECRET)]
    assert_no_secret(result)


def test_no_credentials_means_no_auth_headers():
    with fake_service() as server:
        probe_http(http_target(server.url + "/health"), 2.0)
    assert server.requests == [("/health", None, None)]


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (401, "auth_failed"),
        (403, "auth_failed"),
        (503, "not_ready"),
        (500, "unexpected_error"),
        (404, "unexpected_error"),
    ],
)
def test_other_statuses_fail_with_a_reason_code(status, code):
    with fake_service(status=status, body=f"token {SECRET}") as server:
        result = probe_http(http_target(server.url + "/-/ready", bearer_token=SECRET), 2.0)

    assert result.state is State.FAILING
    assert result.reason_codes == (code,)
    assert result.details["status"] == status
    assert str(status) in result.error
    assert_no_secret(result)


def test_a_redirect_is_not_followed():
    with fake_service(status=302, location="/elsewhere") as server:
        result = probe_http(http_target(server.url + "/-/ready"), 2.0)
    assert result.reason_codes == ("unexpected_error",)
    assert [path for path, _, _ in server.requests] == ["/-/ready"]


def test_expect_status_is_configurable():
    with fake_service(status=204) as server:
        result = probe_http(http_target(server.url + "/", expect_status=204), 2.0)
    assert result.state is State.HEALTHY


def test_https_to_a_plain_http_server_is_tls_error():
    with fake_service() as server:
        result = probe_http(http_target(server.url.replace("http://", "https://")), 2.0)
    assert result.reason_codes == ("tls_error",)


# --- the target object -------------------------------------------------------------------


def test_parse_http_target_and_keep_secrets_out_of_repr_and_endpoint():
    target = parse_target(
        "alertmanager",
        {
            "kind": "http",
            "url": f"http://user:{SECRET}@127.0.0.1:29093/-/ready?x=1",
            "bearer_token": SECRET,
        },
        "components.alertmanager",
    )
    assert isinstance(target, HttpTarget)
    assert target.endpoint == "http://127.0.0.1:29093/-/ready"
    assert SECRET not in repr(target)
    assert target.expect_status == 200 and target.verify_tls is True


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"kind": "http"}, r"components\.x\.url: missing"),
        ({"kind": "http", "url": "ftp://h/"}, "expected an http:// or https:// URL"),
        ({"kind": "http", "url": "http:///x"}, "expected an http:// or https:// URL"),
        ({"kind": "http", "url": "http://h/", "expect_status": 42}, "must be at least 100"),
        ({"kind": "http", "url": "http://h/", "verify_tls": "yes"}, "expected true or false"),
    ],
)
def test_bad_http_targets_are_refused(data, message):
    with pytest.raises(TargetsError, match=message):
        parse_target("x", data, "components.x")


def test_health_cycle_probes_http_components(tmp_path: Path, closed_port):
    with fake_service() as server:
        snapshot = run_cycle(
            {
                "prometheus": http_target(server.url + "/-/ready"),
                "alertmanager": http_target(f"http://127.0.0.1:{closed_port}/-/ready"),
            },
            tmp_path,
            timeout_s=1.0,
            retries=0,
        )
    assert snapshot.components["prometheus"].state is State.HEALTHY
    assert snapshot.components["alertmanager"].reason_codes == ("connect_refused",)
    assert snapshot.queue_depth == 1


def test_probe_command_runs_the_http_probe(monkeypatch, capsys):
    parser = argparse.ArgumentParser()
    probe_cli.register(parser.add_subparsers(dest="command", required=True))
    with fake_service(status=503, body="Service Unavailable") as server:
        target = {"kind": "http", "url": server.url + "/-/ready", "api_key": SECRET}
        monkeypatch.setenv("MEMOPS_PROBE_TARGET", json.dumps(target))
        args = parser.parse_args(["probe", "http", "--timeout", "1", "--retries", "0"])
        code = args.handler(args)

    out, err = capsys.readouterr()
    assert code == 1
    printed = json.loads(out)
    assert printed["kind"] == "http" and printed["reason_codes"] == ["not_ready"]
    assert printed["endpoint"] == server.url + "/-/ready"
    assert err.startswith(f"http probe failed at {server.url}/-/ready: not_ready")
    assert SECRET not in out + err


# --- targets.json: the textfile directory of node_exporter -----------------------------------


def test_textfile_dir_is_merged_into_the_deployment(tmp_path: Path):
    component = {"kind": "http", "url": "http://127.0.0.1:29100/"}
    deployment = {"textfile_dir": "/var/lib/memops/textfile/memops-test"}
    assert merge_targets(tmp_path, "test", {"node_exporter": component}, deployment) is True
    document = json.loads((tmp_path / "targets.json").read_text())
    assert document["deployment"]["textfile_dir"] == "/var/lib/memops/textfile/memops-test"
    assert document["components"]["node_exporter"] == component


@pytest.mark.parametrize("value", ["relative/dir", 3, ""])
def test_textfile_dir_must_be_an_absolute_path(tmp_path: Path, value):
    with pytest.raises(TargetsError, match=r"deployment\.textfile_dir"):
        merge_targets(tmp_path, "test", {}, {"textfile_dir": value})
    assert not (tmp_path / "targets.json").exists()
