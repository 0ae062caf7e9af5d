"""Backup sets in S3: moto in server mode over TLS on 127.0.0.1 (port 39555), the deployed stack.

The S3 endpoint is moto's server with a certificate made for this test (tests/moto_s3.py);
boto3 trusts it through AWS_CA_BUNDLE, as it would a private S3 (MinIO, Ceph) in
production. Settings come from the environment, as a CI ops job would pass them.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Iterator
from typing import Any

import pytest
from integration_helpers import TEST_INVENTORY, DeployedStack, invoke
from moto_s3 import MotoS3, moto_server

from memops.testing import workload as wl

pytestmark = pytest.mark.integration

PORT = 39555
BUCKET = "memops-test-backups"
TENANT = "s3-tenant*[x]"


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoS3]:
    with moto_server(tmp_path_factory.mktemp("moto"), PORT, bucket=BUCKET, prefix="stack") as s3:
        yield s3


@pytest.fixture(scope="module")
def s3_env(moto: MotoS3) -> dict[str, str]:
    return moto.env()


@pytest.fixture(scope="module")
def tenant_data(deployed_stack: DeployedStack) -> wl.Workload:
    data = wl.generate(seed=3636, tenants=[TENANT], items_per_tenant=8)
    redis = deployed_stack.clients.redis()
    wl.write_redis(redis, data)
    with deployed_stack.clients.postgresql() as conn:
        conn.execute("DELETE FROM memory_items WHERE tenant_id = %s", [TENANT])
        wl.write_postgres(conn, data)
    return data


def held(stack: DeployedStack, data: wl.Workload) -> dict[str, Any]:
    with stack.clients.postgresql() as conn:
        rows = wl.read_postgres(conn, [TENANT])
    return {"redis": wl.read_redis(stack.clients.redis(), data.prefix, TENANT), "rows": rows}


def values(data: dict[str, Any]) -> dict[str, str]:
    """The tenant's Redis values without their TTLs (those tick)."""
    return {key: value for key, (value, _ttl) in data["redis"].items()}


def backup(env: dict[str, str], *args: str) -> Any:
    return invoke(
        "backup." + args[0],
        *args[1:],
        "--inventory",
        TEST_INVENTORY,
        "--target",
        "s3",
        "--json",
        env=env,
        timeout=900,
    )


def test_a_namespace_set_in_s3_restores(
    moto: MotoS3, deployed_stack: DeployedStack, s3_env: dict[str, str], tenant_data: wl.Workload
) -> None:
    before = held(deployed_stack, tenant_data)
    created = backup(s3_env, "create", "--tier", "redis,postgresql", "--namespace", TENANT)
    assert created.returncode == 0, created.stderr
    set_id = created.json()["set_id"]
    keys = [o["Key"] for o in moto.client().list_objects_v2(Bucket=BUCKET)["Contents"]]
    assert f"stack/{set_id}/manifest.json" in keys
    assert not any(TENANT in key for key in keys)  # tenant names never become object names
    listed = backup(s3_env, "list")
    assert set_id in [s["set_id"] for s in listed.json()["sets"]]

    redis = deployed_stack.clients.redis()
    redis.delete(*redis.scan_iter(match=wl.namespace_pattern(tenant_data.prefix, TENANT)))
    with deployed_stack.clients.postgresql() as conn:
        conn.execute("DELETE FROM memory_items WHERE tenant_id = %s", [TENANT])

    restored = backup(s3_env, "restore", set_id, "--namespace", TENANT, "--yes")
    assert restored.returncode == 0, restored.stderr
    after = held(deployed_stack, tenant_data)
    assert after["rows"] == before["rows"]
    assert after["redis"].keys() == before["redis"].keys()
    assert values(after) == values(before)


def test_a_corrupted_object_is_refused_and_nothing_is_touched(
    moto: MotoS3, deployed_stack: DeployedStack, s3_env: dict[str, str], tenant_data: wl.Workload
) -> None:
    created = backup(s3_env, "create", "--tier", "redis,postgresql", "--namespace", TENANT)
    assert created.returncode == 0, created.stderr
    set_id = created.json()["set_id"]
    client = moto.client()
    objects = client.list_objects_v2(Bucket=BUCKET, Prefix=f"stack/{set_id}/")["Contents"]
    victim = next(o["Key"] for o in objects if not o["Key"].endswith("manifest.json"))
    body = bytearray(client.get_object(Bucket=BUCKET, Key=victim)["Body"].read())
    body[len(body) // 2] ^= 0xFF
    client.put_object(Bucket=BUCKET, Key=victim, Body=bytes(body))
    live = held(deployed_stack, tenant_data)

    verified = backup(s3_env, "verify", set_id)
    restored = backup(s3_env, "restore", set_id, "--namespace", TENANT, "--yes")

    assert verified.returncode == 1, verified.stdout  # the set is bad: a failed check
    assert victim.removeprefix(f"stack/{set_id}/") in verified.json()["problem"]
    assert restored.returncode == 2, restored.stderr
    assert len(restored.stderr.strip().splitlines()) == 1, restored.stderr
    after = held(deployed_stack, tenant_data)
    assert after["rows"] == live["rows"]
    assert values(after) == values(live)


def test_an_unreachable_endpoint_fails_in_one_line_and_leaves_no_set(
    moto: MotoS3, s3_env: dict[str, str], tenant_data: wl.Workload
) -> None:
    before = moto.client().list_objects_v2(Bucket=BUCKET).get("KeyCount", 0)
    down = {**s3_env, "AWS_ENDPOINT_URL_S3": "https://127.0.0.1:1"}
    run = backup(down, "create", "--tier", "redis", "--namespace", TENANT)
    assert run.returncode != 0
    assert "127.0.0.1:1" in run.stderr and len(run.stderr.strip().splitlines()) == 1, run.stderr
    assert moto.client().list_objects_v2(Bucket=BUCKET).get("KeyCount", 0) == before


def test_an_encrypted_set_in_s3_restores_only_with_its_key(
    moto: MotoS3, deployed_stack: DeployedStack, s3_env: dict[str, str], tenant_data: wl.Workload
) -> None:
    key = {"MEMOPS_BACKUP_KEY": base64.b64encode(secrets.token_bytes(32)).decode()}
    other = {"MEMOPS_BACKUP_KEY": base64.b64encode(secrets.token_bytes(32)).decode()}
    before = held(deployed_stack, tenant_data)
    created = backup(
        {**s3_env, **key}, "create", "--tier", "redis,postgresql", "--namespace", TENANT
    )
    assert created.returncode == 0, created.stderr
    set_id = created.json()["set_id"]
    client = moto.client()
    stored = b"".join(
        client.get_object(Bucket=BUCKET, Key=o["Key"])["Body"].read()
        for o in client.list_objects_v2(Bucket=BUCKET, Prefix=f"stack/{set_id}/")["Contents"]
        if not o["Key"].endswith("manifest.json")
    )
    a_value = next(value for value, _ttl in before["redis"].values())
    assert a_value.encode() not in stored  # the objects hold ciphertext only

    refused = backup({**s3_env, **other}, "restore", set_id, "--namespace", TENANT, "--yes")
    assert refused.returncode == 2 and "key" in refused.stderr, refused.stderr

    redis = deployed_stack.clients.redis()
    redis.delete(*redis.scan_iter(match=wl.namespace_pattern(tenant_data.prefix, TENANT)))
    restored = backup({**s3_env, **key}, "restore", set_id, "--namespace", TENANT, "--yes")
    assert restored.returncode == 0, restored.stderr
    after = held(deployed_stack, tenant_data)
    assert values(after) == values(before)
    assert after["rows"] == before["rows"]
