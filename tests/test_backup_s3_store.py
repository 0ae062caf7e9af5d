"""The S3 store and the multipart uploads a failed backup leaves, against moto in process.

A backup cut off while a file goes up in parts leaves an upload S3 keeps (and bills) until
it is aborted. The store counts such uploads as part of their set: a set they alone left is
incomplete, and prune aborts them. The whole scenario, with a real endpoint killed, is
tests/test_fault_s3.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from backup_sets import write_set
from botocore.exceptions import ClientError
from moto import mock_aws

from memops.backup import verify
from memops.backup.retention import Policy
from memops.backup.set_ids import new_set_id
from memops.backup.sets import plan_prune, prune
from memops.backup.store import S3Settings, S3Store
from memops.backup.verify import verify_set

BUCKET = "memops-store-test"


@pytest.fixture(autouse=True)
def _no_tier_checkers(monkeypatch: pytest.MonkeyPatch) -> None:
    """The sets here hold stand-in bytes, not real RDBs or dumps: the tier engines'
    checkers (registered when their modules are imported, by other tests) do not apply."""
    monkeypatch.setattr(verify, "_CHECKERS", {})


@pytest.fixture
def s3() -> Iterator[Any]:
    with mock_aws():
        client = boto3.client(
            "s3",
            region_name="us-east-1",
            aws_access_key_id="memops-test",
            aws_secret_access_key="memops-test-secret",
        )
        client.create_bucket(Bucket=BUCKET)
        yield client


def s3_store(client: Any) -> S3Store:
    return S3Store(S3Settings(bucket=BUCKET, prefix="stack/"), client=client)


def begin_upload(client: Any, key: str) -> str:
    """A multipart upload with one part stored, then abandoned (as a cut-off upload is)."""
    upload_id = client.create_multipart_upload(Bucket=BUCKET, Key=key)["UploadId"]
    client.upload_part(Bucket=BUCKET, Key=key, UploadId=upload_id, PartNumber=1, Body=b"x" * 1024)
    return str(upload_id)


def pending(client: Any) -> list[str]:
    return sorted(u["Key"] for u in client.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []))


def test_prune_aborts_the_uploads_a_failed_backup_left(s3: Any, tmp_path: Path) -> None:
    store = s3_store(s3)
    complete, _ = write_set(store, tmp_path)
    only_upload, half = new_set_id(), new_set_id()
    begin_upload(s3, f"stack/{only_upload}/redis/dump.rdb")  # cut off in its first file
    s3.put_object(Bucket=BUCKET, Key=f"stack/{half}/redis/dump.rdb", Body=b"rdb")
    begin_upload(s3, f"stack/{half}/postgresql/memory.pgdump.gz")  # in a later file
    not_ours = [f"elsewhere/{new_set_id()}/file", "stack/not_a_set/file", "stack/loose-file"]
    for key in not_ours:
        begin_upload(s3, key)

    listing = store.list_sets()
    assert [m.set_id for m in listing.sets] == [complete.set_id]
    assert sorted(i.set_id for i in listing.incomplete) == sorted([only_upload, half])

    removed = prune(store, plan_prune(store, Policy()))

    assert sorted(removed) == sorted([only_upload, half])
    assert pending(s3) == sorted(not_ours)
    assert s3.list_objects_v2(Bucket=BUCKET, Prefix=f"stack/{half}/")["KeyCount"] == 0
    assert verify_set(store, complete.set_id).ok


class UploadsDenied:
    """A client that may not list multipart uploads (no s3:ListBucketMultipartUploads)."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def get_paginator(self, name: str) -> Any:
        if name != "list_multipart_uploads":
            return self._client.get_paginator(name)
        return self

    def paginate(self, **_kwargs: Any) -> Iterator[dict[str, Any]]:
        error = {"Error": {"Code": "AccessDenied", "Message": "Access Denied"}}
        raise ClientError(error, "ListMultipartUploads")  # type: ignore[arg-type]
        yield {}


def test_without_leave_to_list_uploads_sets_are_listed_and_pruned_as_before(
    s3: Any, tmp_path: Path
) -> None:
    store = s3_store(UploadsDenied(s3))
    complete, _ = write_set(store, tmp_path)
    half = new_set_id()
    s3.put_object(Bucket=BUCKET, Key=f"stack/{half}/redis/dump.rdb", Body=b"rdb")

    listing = store.list_sets()
    assert [m.set_id for m in listing.sets] == [complete.set_id]
    assert [i.set_id for i in listing.incomplete] == [half]
    assert prune(store, plan_prune(store, Policy())) == [half]
    assert s3.list_objects_v2(Bucket=BUCKET, Prefix=f"stack/{half}/")["KeyCount"] == 0
