"""The application's Qdrant token (memops.deploy.qdrant_token) against the stand-in's JWT RBAC.

What these tests prove: a token memops issues for some collections reads and
writes those, through the official client, and gets 403 on every other
collection (read, write, exists) and on what needs global access (creating or
dropping collections, /metrics); the collection list shows only its collections;
the API key keeps full access; a tampered, expired, unknown-claim or
payload-filtered token is refused with 401, and so is any token when JWT RBAC is
off. The names memops keeps for quarantine cannot be granted.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from qdrant_client import QdrantClient, models
from qdrant_client.http.exceptions import UnexpectedResponse
from standin_server import RunningStandin, running_standin

from memops.deploy.qdrant_token import TokenError, access_claim, app_token, sign

pytestmark = pytest.mark.integration

GRANTED = ("memory_chat", "memory_fact")
OTHER = "memops-quarantine-0123"


def _collection(client: QdrantClient, name: str) -> None:
    client.create_collection(name, vectors_config=models.VectorParams(size=2, distance="Dot"))
    client.upsert(name, [models.PointStruct(id=1, vector=[1.0, 0.0], payload={"t": name})])


@pytest.fixture
def collections(client: QdrantClient) -> Iterator[None]:
    for name in (*GRANTED, OTHER):
        _collection(client, name)
    yield


def _status(standin: RunningStandin, token: str, method: str, path: str, **kw: object) -> int:
    headers = {"authorization": f"Bearer {token}"}
    return httpx.request(method, standin.url + path, headers=headers, timeout=10, **kw).status_code


def test_app_token_reaches_exactly_its_collections(
    standin: RunningStandin, client: QdrantClient, collections: None
) -> None:
    token = app_token(standin.api_key, GRANTED)
    with contextlib.closing(QdrantClient(url=standin.url, api_key=token, timeout=10)) as app:
        assert sorted(c.name for c in app.get_collections().collections) == sorted(GRANTED)
        app.upsert(GRANTED[0], [models.PointStruct(id=2, vector=[0.0, 1.0], payload={})])
        assert app.count(GRANTED[0], exact=True).count == 2
        for call in (
            lambda: app.scroll(OTHER, limit=10),
            lambda: app.count(OTHER, exact=True),
            lambda: app.retrieve(OTHER, [1]),
            lambda: app.upsert(OTHER, [models.PointStruct(id=9, vector=[1.0, 1.0])]),
            lambda: app.collection_exists(OTHER),
            lambda: app.delete_collection(GRANTED[0]),
            lambda: app.create_collection(
                "new", vectors_config=models.VectorParams(size=2, distance="Dot")
            ),
        ):
            with pytest.raises(UnexpectedResponse) as refused:
                call()
            assert refused.value.status_code == 403
    assert _status(standin, token, "GET", "/metrics") == 403
    assert client.count(OTHER, exact=True).count == 1  # nothing written there
    assert not client.collection_exists("new")
    assert sorted(c.name for c in client.get_collections().collections) == sorted((*GRANTED, OTHER))


def test_a_read_only_token_cannot_write(standin: RunningStandin, collections: None) -> None:
    read_only = sign({"access": [{"collection": GRANTED[0], "access": "r"}]}, standin.api_key)
    path = f"/collections/{GRANTED[0]}/points"
    assert _status(standin, read_only, "POST", path + "/scroll", json={}) == 200
    body = {"points": [{"id": 5, "vector": [1.0, 1.0], "payload": {}}]}
    assert _status(standin, read_only, "PUT", path, json=body) == 403
    global_read = sign({"access": "r"}, standin.api_key)
    assert _status(standin, global_read, "POST", f"/collections/{OTHER}/points/scroll") == 200
    assert _status(standin, global_read, "PUT", path, json=body) == 403


@pytest.mark.parametrize(
    "claims",
    [
        {"access": [{"collection": GRANTED[0], "access": "rw"}], "exp": int(time.time()) - 5},
        {"access": [{"collection": GRANTED[0], "access": "rw", "payload": {"t": "x"}}]},
        {"access": "rw"},
        {"value_exists": {"collection": GRANTED[0], "matches": []}},
    ],
    ids=["expired", "payload-filter", "bad-global-mode", "value-exists"],
)
def test_tokens_it_cannot_honour_are_refused(
    standin: RunningStandin, collections: None, claims: dict[str, object]
) -> None:
    token = sign(claims, standin.api_key)
    assert _status(standin, token, "POST", f"/collections/{GRANTED[0]}/points/scroll") == 401


def test_a_token_signed_with_another_key_is_refused(
    standin: RunningStandin, collections: None
) -> None:
    forged = app_token("not-the-api-key-of-this-server", GRANTED)
    assert _status(standin, forged, "GET", "/collections") == 401
    header, _body, signature = app_token(standin.api_key, GRANTED).split(".")
    widened = sign({"access": "m"}, "x").split(".")[1]
    assert _status(standin, f"{header}.{widened}.{signature}", "GET", "/collections") == 401


def test_without_jwt_rbac_only_the_key_is_accepted(tmp_path: Path) -> None:
    with running_standin(tmp_path, jwt_rbac=False) as plain:
        token = app_token(plain.api_key, GRANTED)
        assert _status(plain, token, "GET", "/collections") == 401
        assert _status(plain, plain.api_key, "GET", "/collections") == 200


@pytest.mark.parametrize("names", [(), ("a", "a"), ("memops-quarantine-abc",), ("",)])
def test_names_that_cannot_be_granted(names: tuple[str, ...]) -> None:
    with pytest.raises(TokenError):
        access_claim(names)
