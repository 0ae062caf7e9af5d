"""The fault suite's S3 scenario: the endpoint killed while a backup set's file goes up in parts.

The scratch stack of all three tiers (tests/three_tiers.py) backs up into moto's S3 server
(tests/moto_s3.py), reached through a TCP proxy (tests/tcp_proxy.py) that stands for the
endpoint: SIGKILLing the proxy cuts every connection and refuses new ones, as when the
endpoint's process dies, while moto (whose state lives only in its memory, so a restarted
moto would have lost the bucket) keeps what memops left there for the test to inspect.
The proxy slows uploads down so that the kill lands while the multipart upload is under way;
the test waits for moto to hold a part of it, never for a length of time.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
from collections.abc import Iterator
from typing import Any

import pytest
import test_fault_suite
import yaml
from moto_s3 import MotoS3, moto_server
from tcp_proxy import TcpProxy
from test_fault_suite import invoke, snapshot, start
from three_tiers import Stack

from memops.backup.scratch import free_port
from memops.testing.pgcluster import ScratchCluster

stack = test_fault_suite.stack  # the fixture: the scratch stack, with its cluster recorded

pytestmark = [
    pytest.mark.integration,
    pytest.mark.filterwarnings("ignore:Api key is used with an insecure connection"),
]

BUCKET = "memops-fault-backups"
PREFIX = "stack"
PART = 5 << 20  # the smallest part S3 (and boto3's transfer manager) takes
BULK = 16 << 20  # random bytes in one row: the PostgreSQL dump goes up in four parts
RATE = 1 << 20  # bytes per second and connection through the proxy while the upload runs
DEADLINE_S = 120


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoS3]:
    with moto_server(
        tmp_path_factory.mktemp("moto"), free_port(), bucket=BUCKET, prefix=PREFIX
    ) as s3:
        yield s3


def json_of(run: Any) -> dict[str, Any]:
    assert run.returncode == 0, run.stderr
    return dict(json.loads(run.stdout))


def add_bulk(stack: Stack) -> None:
    """One row's content becomes BULK random bytes (base64): more than three parts compressed."""
    content = base64.b64encode(os.urandom(BULK)).decode()
    digest = hashlib.sha256(content.encode()).hexdigest()
    cluster: ScratchCluster = stack.cluster  # type: ignore[attr-defined]
    with cluster.admin(stack.pg.info.dbname) as conn:
        conn.execute(
            "UPDATE memory_items SET content = %s, content_hash = %s"
            " WHERE id = (SELECT id FROM memory_items ORDER BY id LIMIT 1)",
            (content, digest),
        )


def uploads(s3: Any, prefix: str) -> list[dict[str, Any]]:
    """The multipart uploads begun and neither completed nor aborted under ``prefix``."""
    return list(s3.list_multipart_uploads(Bucket=BUCKET, Prefix=prefix).get("Uploads", []))


def keys(s3: Any, prefix: str) -> list[str]:
    return [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])]


def wait_for_a_stored_part(s3: Any, running: Any) -> dict[str, Any]:
    """The multipart upload under the store's prefix once moto holds one of its parts."""
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        assert running.poll() is None, f"the backup ended first: {running.communicate()}"
        for upload in uploads(s3, f"{PREFIX}/"):
            found = s3.list_parts(Bucket=BUCKET, Key=upload["Key"], UploadId=upload["UploadId"])
            if found.get("Parts"):
                return upload
        time.sleep(0.05)
    raise AssertionError(f"no part of a multipart upload reached moto in {DEADLINE_S} s")


def test_the_s3_endpoint_killed_during_a_multipart_upload(stack: Stack, moto: MotoS3) -> None:
    """One error line, no new set listed, nothing live changed, and the next prune removes the
    failed set's objects and aborts its multipart upload."""
    settings = {
        "backup_target": "s3",
        "backup_s3_multipart_threshold": PART,
        "backup_s3_multipart_chunksize": PART,
    }
    (stack.inventory / "group_vars" / "all.yml").write_text(yaml.safe_dump(settings))
    s3 = moto.client()
    kept = json_of(invoke(stack, "backup.create", "--json", env=moto.env()))["set_id"]
    add_bulk(stack)
    before = snapshot(stack)

    proxy = TcpProxy(free_port(), moto.port, rate=RATE)
    endpoint = moto.env(proxy.port)
    with proxy:
        running = start(stack, "backup.create", "--json", env=endpoint)  # --json: no progress
        try:
            upload = wait_for_a_stored_part(s3, running)
            proxy.kill()
            out, err = running.communicate(timeout=DEADLINE_S)
        finally:
            if running.poll() is None:
                running.kill()
        failed = upload["Key"].removeprefix(f"{PREFIX}/").split("/")[0]
        assert upload["Key"].startswith(f"{PREFIX}/{failed}/postgresql/"), upload

        assert running.returncode == 1, (out, err)
        assert len(err.strip().splitlines()) == 1, err
        assert f"127.0.0.1:{proxy.port}" in err and "postgresql/" in err, err
        assert json.loads(out)["ok"] is False
        # left behind, as a killed endpoint leaves them: nothing could remove them
        assert upload["UploadId"] in [u["UploadId"] for u in uploads(s3, f"{PREFIX}/{failed}/")]
        left = keys(s3, f"{PREFIX}/{failed}/")
        assert any(key.startswith(f"{PREFIX}/{failed}/redis/") for key in left), left
        assert f"{PREFIX}/{failed}/manifest.json" not in left

        proxy.start(rate=0)  # the endpoint is back
        listed = json_of(invoke(stack, "backup.list", "--json", env=endpoint))
        assert [s["set_id"] for s in listed["sets"]] == [kept]
        assert listed["incomplete"] == [failed]
        assert snapshot(stack) == before

        pruned = json_of(invoke(stack, "backup.prune", "--yes", "--json", env=endpoint))
        assert pruned["removed"] == [failed]
        assert keys(s3, f"{PREFIX}/{failed}/") == []
        assert uploads(s3, f"{PREFIX}/") == []
        assert invoke(stack, "backup.verify", kept, env=endpoint).returncode == 0
