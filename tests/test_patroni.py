"""A Patroni member's target (its REST API and auth, kept out of repr) and how health shows it."""

from __future__ import annotations

import pytest

from memops.deploy.targets import PostgresTarget, TargetsError, parse_target
from memops.ha.patroni import PatroniError, cluster_members
from memops.ops.health import node_part

MEMBER = {
    "kind": "postgresql",
    "host": "198.18.48.11",
    "port": 15432,
    "dbname": "memops",
    "user": "memops_ops",
    "password": "pg-secret",
    "patroni_url": "http://198.18.48.11:8008/",
    "patroni_user": "memops",
    "patroni_password": "rest-secret",
}


def test_a_member_carries_its_rest_api_and_hides_its_password() -> None:
    target = parse_target("postgresql@ha-1", MEMBER, "targets.json")
    assert isinstance(target, PostgresTarget)
    assert target.patroni_url == "http://198.18.48.11:8008"
    assert "rest-secret" not in repr(target)
    assert "rest-secret" in target.secrets


def test_a_single_cluster_has_no_rest_api() -> None:
    single = {k: v for k, v in MEMBER.items() if not k.startswith("patroni")}
    target = parse_target("postgresql", single, "targets.json")
    assert isinstance(target, PostgresTarget) and target.patroni_url is None


def test_a_rest_api_that_is_not_http_is_refused_in_one_line() -> None:
    with pytest.raises(TargetsError, match="patroni_url: expected an http"):
        parse_target("postgresql@ha-1", {**MEMBER, "patroni_url": "ftp://x"}, "targets.json")


def test_no_member_answering_is_refused_naming_each_url() -> None:
    # 192.0.2.1 (TEST-NET-1) never answers; the timeout bounds the wait.
    with pytest.raises(PatroniError, match=r"no Patroni REST API answered.*192\.0\.2\.1"):
        cluster_members(["http://192.0.2.1:8008"], timeout_s=0.2)


def test_health_shows_a_members_role_timeline_and_lag() -> None:
    standby = {"patroni": {"role": "sync_standby", "timeline": 2, "lag_bytes": 0}}
    assert node_part({**standby, "replication_lag_s": 0.0}) == (
        "  sync_standby (timeline 2, lag 0 B / 0.0 s)"
    )
    assert node_part({"patroni": {"role": "leader", "timeline": 2}}) == "  leader (timeline 2)"
