"""The Qdrant stand-in (the qdrant_standin package), run as a real subprocess, and its archive.

The server is checked three ways: through the official qdrant-client (values
must round-trip exactly), through raw HTTP against Qdrant's published OpenAPI
document (every route the stand-in serves), and as a process (config, exit
codes, SIGTERM, restart on the same storage).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib.metadata
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import tarfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from jsonschema import Draft202012Validator
from qdrant_client import QdrantClient
from qdrant_client.common.version_check import is_compatible
from qdrant_client.http import models

from memops.cli import standin as standin_cli
from memops.deploy.standin_archive import ARCHIVE_NAME, build_standin_archive, standin_source_dir
from memops.testing import workload as wl
from qdrant_standin.app import ROUTES
from qdrant_standin.protocol import ApiError
from qdrant_standin.storage import CollectionDump, Store

TESTS_DIR = Path(__file__).resolve().parent
OPENAPI_PATH = TESTS_DIR / "contracts" / "qdrant-openapi.json"
API_KEY = "test-key-7d1f"  # distinctive, so the log check below cannot match by accident
START_TIMEOUT_S = 30

pytestmark = pytest.mark.filterwarnings("ignore:Api key is used with an insecure connection")


# --- the server process ---------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_config(directory: Path, port: int, api_key: str | None = API_KEY) -> Path:
    service: dict[str, Any] = {"host": "127.0.0.1", "http_port": port, "grpc_port": None}
    if api_key:
        service["api_key"] = api_key
    config = {
        "log_level": "INFO",
        "telemetry_disabled": True,
        "storage": {
            "storage_path": str(directory / "storage"),
            "snapshots_path": str(directory / "snapshots"),
        },
        "service": service,
    }
    path = directory / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def standin_command(config: Path) -> list[str]:
    return [sys.executable, "-m", "qdrant_standin", "--config-path", str(config)]


def standin_env(**extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("QDRANT__")}
    env.update(extra)
    return env


@dataclass
class Standin:
    """A running stand-in: its URL, directories and stderr log."""

    directory: Path
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def snapshots_path(self) -> Path:
        return self.directory / "snapshots"

    def log(self) -> str:
        return self.log_path.read_text()

    def terminate(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=START_TIMEOUT_S)


def start_standin(directory: Path, port: int, **env: str) -> Standin:
    config = write_config(directory, port)
    log_path = directory / f"stderr-{time.monotonic_ns()}.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(standin_command(config), stderr=log, env=standin_env(**env))
    standin = Standin(directory, port, process, log_path)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"stand-in exited with {process.returncode}: {standin.log()}")
        with contextlib.suppress(httpx.TransportError):
            if _request("GET", f"{standin.url}/readyz", timeout=1).status_code == 200:
                return standin
        time.sleep(0.1)
    standin.terminate()
    pytest.fail(f"stand-in did not get ready: {standin.log()}")


@pytest.fixture(scope="module")
def standin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Standin]:
    server = start_standin(tmp_path_factory.mktemp("standin"), free_port())
    yield server
    assert server.terminate() == 0, server.log()


@pytest.fixture
def spawn() -> Iterator[Any]:
    """Start stand-ins for one test; any still running at its end is stopped."""
    started: list[Standin] = []

    def start(directory: Path, port: int, **env: str) -> Standin:
        started.append(start_standin(directory, port, **env))
        return started[-1]

    yield start
    for server in started:
        server.terminate()


@pytest.fixture
def client(standin: Standin) -> Iterator[QdrantClient]:
    qdrant = QdrantClient(url=standin.url, api_key=API_KEY, timeout=30)
    yield qdrant
    qdrant.close()


@pytest.fixture
def http(standin: Standin) -> Iterator[httpx.Client]:
    headers = {"api-key": API_KEY}
    with httpx.Client(base_url=standin.url, headers=headers, trust_env=False) as session:
        yield session


# --- OpenAPI checking -----------------------------------------------------------------


def openapi_to_json_schema(node: Any) -> Any:
    """OpenAPI 3.0 schemas -> JSON Schema: ``nullable: true`` becomes an allowed null."""
    if isinstance(node, list):
        return [openapi_to_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: openapi_to_json_schema(value) for key, value in node.items()}
    if out.get("nullable") is not True:  # (a property *named* "nullable" maps to a dict)
        return out
    del out["nullable"]
    if isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
        return out
    schema_keys = set(out) - {"description", "default", "example", "deprecated", "format"}
    return {"anyOf": [out, {"type": "null"}]} if schema_keys else {"type": "null"}


class OpenApi:
    """Qdrant's OpenAPI document, with schema lookups by path template and method."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = openapi_to_json_schema(document)
        self.components = self.document["components"]

    def has(self, template: str, method: str) -> bool:
        return method.lower() in self.document["paths"].get(template, {})

    def request_schema(self, template: str, method: str) -> dict[str, Any]:
        operation = self.document["paths"][template][method.lower()]
        return operation["requestBody"]["content"]["application/json"]["schema"]

    def response_schema(self, template: str, method: str, status: int) -> dict[str, Any]:
        responses = self.document["paths"][template][method.lower()]["responses"]
        response = responses.get(str(status)) or responses.get(f"{status // 100}XX")
        response = response if "content" in (response or {}) else responses["default"]
        content = response["content"]
        return next(iter(content.values()))["schema"]

    def validate(self, schema: dict[str, Any], instance: Any) -> None:
        validator = Draft202012Validator(
            {**schema, "components": self.components},
            format_checker=Draft202012Validator.FORMAT_CHECKER,
        )
        errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(instance)]
        assert not errors, f"{json.dumps(instance)[:500]} violates the schema: {errors[:5]}"

    def component(self, name: str) -> dict[str, Any]:
        return {"$ref": f"#/components/schemas/{name}"}


@pytest.fixture(scope="module")
def openapi() -> OpenApi:
    return OpenApi(json.loads(OPENAPI_PATH.read_text()))


@dataclass
class Api:
    """Raw REST calls whose request and response bodies are checked against the OpenAPI doc."""

    http: httpx.Client
    spec: OpenApi
    checked: set[tuple[str, str]] = field(default_factory=set)

    def call(
        self, method: str, template: str, *, expect: int = 200, body: Any = None, **kwargs: Any
    ) -> httpx.Response:
        assert self.spec.has(template, method), f"{method} {template} is not in the document"
        path_params = kwargs.pop("path", {})
        if body is not None:
            self.spec.validate(self.spec.request_schema(template, method), body)
            kwargs["json"] = body
        response = self.http.request(method, template.format(**path_params), **kwargs)
        assert response.status_code == expect, f"{method} {template}: {response.text}"
        schema = self.spec.response_schema(template, method, expect)
        if response.headers["content-type"].startswith("application/json"):
            payload = response.json()
            if expect == 200 and "result" in schema.get("properties", {}):
                assert payload["status"] == "ok" and "result" in payload
            if expect >= 400:
                assert isinstance(payload["status"]["error"], str)
            self.spec.validate(schema, payload)
        else:
            self.spec.validate(schema, response.text)
        self.checked.add((method, template))
        return response

    def result(self, method: str, template: str, **kwargs: Any) -> Any:
        return self.call(method, template, **kwargs).json()["result"]


@pytest.fixture
def api(http: httpx.Client, openapi: OpenApi) -> Api:
    return Api(http, openapi)


# --- (a) the official client ----------------------------------------------------------


POINTS = [
    models.PointStruct(
        id=1,
        vector=[0.5, 0.25, -0.125, 1.0],
        payload={"tenant_id": "acme", "text": "première note", "tags": ["a", "b"], "n": 1.5},
    ),
    models.PointStruct(
        id=2,
        vector=[0.0, 1.0, 0.5, -0.25],
        payload={"tenant_id": "acme", "nested": {"k": [1, 2, {"deep": None}]}, "flag": True},
    ),
    models.PointStruct(
        id="6f0a1c1e-9d5b-4a53-9c55-8a1d0e5b7c21",
        vector=[1.0, 0.0, 0.0, 0.0],
        payload={"tenant_id": "globex", "text": "other tenant"},
    ),
]


def test_official_client_round_trips_points(client: QdrantClient) -> None:
    name = "client_roundtrip"
    assert client.create_collection(
        name, vectors_config=models.VectorParams(size=4, distance=models.Distance.DOT)
    )
    client.create_payload_index(name, "tenant_id", models.PayloadSchemaType.KEYWORD, wait=True)
    result = client.upsert(name, points=POINTS, wait=True)
    assert result.status == models.UpdateStatus.COMPLETED

    fetched = client.retrieve(name, [point.id for point in POINTS], with_vectors=True)
    assert {(p.id, tuple(p.vector), json.dumps(p.payload)) for p in fetched} == {
        (p.id, tuple(p.vector), json.dumps(p.payload)) for p in POINTS
    }

    acme = models.Filter(
        must=[models.FieldCondition(key="tenant_id", match=models.MatchValue(value="acme"))]
    )
    scrolled, next_offset = client.scroll(name, scroll_filter=acme, limit=10)
    assert [point.id for point in scrolled] == [1, 2] and next_offset is None
    assert client.count(name, count_filter=acme).count == 2
    assert client.count(name).count == 3

    hits = client.query_points(name, query=[1.0, 0.0, 0.0, 0.0], limit=2, with_payload=True).points
    assert [hit.id for hit in hits] == [POINTS[2].id, 1]
    assert [hit.score for hit in hits] == [1.0, 0.5]  # exact dot products
    assert hits[0].payload == POINTS[2].payload

    tenant_hits = client.query_points(name, query=[1.0, 0.0, 0.0, 0.0], query_filter=acme).points
    assert {hit.id for hit in tenant_hits} == {1, 2}

    info = client.get_collection(name)
    assert info.status == models.CollectionStatus.GREEN
    assert info.points_count == 3
    assert info.payload_schema["tenant_id"].data_type == models.PayloadSchemaType.KEYWORD
    assert info.payload_schema["tenant_id"].points == 3

    client.delete(name, points_selector=models.PointIdsList(points=[1]), wait=True)
    assert client.retrieve(name, [1]) == []
    client.delete(name, points_selector=models.FilterSelector(filter=acme), wait=True)
    assert [point.id for point in client.scroll(name)[0]] == [POINTS[2].id]

    assert client.delete_collection(name)
    assert not client.collection_exists(name)


# --- (b) raw REST against the OpenAPI document ------------------------------------------


C = "/collections/{collection_name}"


def test_every_endpoint_matches_the_openapi_document(api: Api, standin: Standin) -> None:
    _check_service_endpoints(api)
    _check_collection_endpoints(api, "conformance")
    _check_point_endpoints(api, "conformance")
    _check_snapshot_endpoints(api, "conformance", standin)
    _check_error_responses(api)

    served = {
        (route.method, route.pattern.replace("{name}", "{collection_name}")) for route in ROUTES
    }
    documented = {
        (method, template) for method, template in served if api.spec.has(template, method)
    }
    assert documented - api.checked == set(), "routes served but not checked here"
    assert served - documented == {("POST", C + "/points/search")}  # dropped from the doc


def _check_service_endpoints(api: Api) -> None:
    version = api.call("GET", "/").json()
    assert version["title"] == "qdrant - vector search engine"
    # qdrant-client warns unless major.minor are within one of its own version
    assert is_compatible(importlib.metadata.version("qdrant-client"), version["version"])
    assert api.call("GET", "/healthz").text == "healthz check passed"
    assert api.call("GET", "/livez").text == "livez check passed"
    assert api.call("GET", "/readyz").text == "all shards are ready"
    assert "collections_total " in api.call("GET", "/metrics").text


def _check_collection_endpoints(api: Api, name: str) -> None:
    where = {"collection_name": name}
    body = {"vectors": {"size": 3, "distance": "Cosine"}}
    assert api.result("PUT", C, path=where, body=body) is True
    api.call("PUT", C, path=where, body=body, expect=409)  # already exists
    assert {"name": name} in api.result("GET", "/collections")["collections"]
    assert api.result("GET", C + "/exists", path=where) == {"exists": True}
    for field_name, schema in (("tenant_id", "keyword"), ("rank", {"type": "integer"})):
        index = {"field_name": field_name, "field_schema": schema}
        api.call("PUT", C + "/index", path=where, body=index, params={"wait": "true"})
    info = api.result("GET", C, path=where)
    assert info["config"]["params"]["vectors"] == {"size": 3, "distance": "Cosine"}
    assert info["payload_schema"]["rank"] == {
        "data_type": "integer",
        "params": {"type": "integer"},
        "points": 0,
    }
    dropped = {**where, "field_name": "rank"}
    api.call("DELETE", C + "/index/{field_name}", path=dropped, params={"wait": "true"})
    assert set(api.result("GET", C, path=where)["payload_schema"]) == {"tenant_id"}


def _check_point_endpoints(api: Api, name: str) -> None:
    where = {"collection_name": name}
    upsert = {
        "points": [
            {"id": 1, "vector": [0.1, 0.2, 0.3], "payload": {"tenant_id": "a", "rank": 1}},
            {"id": 2, "vector": [0.3, 0.2, 0.1], "payload": {"tenant_id": "b"}},
            {"id": str(uuid.UUID(int=3)), "vector": [0.2, 0.2, 0.2], "payload": None},
        ]
    }
    done = api.result("PUT", C + "/points", path=where, body=upsert, params={"wait": "true"})
    assert done["status"] == "completed"
    batch = {"batch": {"ids": [4], "vectors": [[1.0, 0.0, 0.0]], "payloads": [{"tenant_id": "a"}]}}
    api.call("PUT", C + "/points", path=where, body=batch, params={"wait": "true"})

    fetched = api.result(
        "POST", C + "/points", path=where, body={"ids": [1, 2], "with_vector": True}
    )
    assert sorted(point["id"] for point in fetched) == [1, 2]
    one = api.result("GET", C + "/points/{id}", path={**where, "id": 1})
    assert one["payload"] == {"tenant_id": "a", "rank": 1}
    assert one["vector"] == [0.26726124, 0.5345225, 0.80178374]  # cosine-normalised float32

    tenant = {"must": [{"key": "tenant_id", "match": {"value": "a"}}]}
    page = api.result("POST", C + "/points/scroll", path=where, body={"filter": tenant, "limit": 1})
    assert [p["id"] for p in page["points"]] == [1] and page["next_page_offset"] == 4
    counted = api.result("POST", C + "/points/count", path=where, body={"filter": tenant})
    assert counted == {"count": 2}

    query = {"query": [1.0, 0.0, 0.0], "filter": tenant, "with_payload": True, "limit": 5}
    hits = api.result("POST", C + "/points/query", path=where, body=query)["points"]
    assert [hit["id"] for hit in hits] == [4, 1] and hits[0]["score"] == 1.0

    search = {"vector": [1.0, 0.0, 0.0], "filter": tenant, "limit": 5}
    response = api.http.post(f"/collections/{name}/points/search", json=search)
    assert response.status_code == 200
    found = response.json()["result"]
    api.spec.validate({"type": "array", "items": api.spec.component("ScoredPoint")}, found)
    assert [hit["id"] for hit in found] == [4, 1]

    removed = {"points": [2]}
    api.call("POST", C + "/points/delete", path=where, body=removed, params={"wait": "true"})
    by_filter = {"filter": {"must": [{"key": "tenant_id", "match": {"value": "a"}}]}}
    api.call("POST", C + "/points/delete", path=where, body=by_filter, params={"wait": "true"})
    assert api.result("POST", C + "/points/count", path=where, body={}) == {"count": 1}


def _check_snapshot_endpoints(api: Api, name: str, standin: Standin) -> None:
    where = {"collection_name": name}
    created = api.result("POST", C + "/snapshots", path=where, params={"wait": "true"})
    listed = api.result("GET", C + "/snapshots", path=where)
    assert created in listed
    snapshot = {**where, "snapshot_name": created["name"]}
    data = api.call("GET", C + "/snapshots/{snapshot_name}", path=snapshot).content
    assert len(data) == created["size"]

    files = {"snapshot": (created["name"], data, "application/octet-stream")}
    params = {"priority": "snapshot", "wait": "true"}
    api.call("POST", C + "/snapshots/upload", path=where, files=files, params=params)
    location = (standin.snapshots_path / name / created["name"]).as_uri()
    body = {"location": location, "checksum": created["checksum"]}
    assert api.result("PUT", C + "/snapshots/recover", path=where, body=body) is True

    assert api.result("DELETE", C + "/snapshots/{snapshot_name}", path=snapshot) is True
    assert api.result("GET", C + "/snapshots", path=where) == []
    assert api.result("DELETE", C, path=where) is True


def _check_error_responses(api: Api) -> None:
    missing = {"collection_name": "no_such_collection"}
    error = api.call("GET", C, path=missing, expect=404).json()["status"]["error"]
    assert "no_such_collection" in error
    assert api.result("GET", C + "/exists", path=missing) == {"exists": False}
    api.call("POST", C + "/points/scroll", path=missing, body={}, expect=404)
    api.call("PUT", C, path={"collection_name": "bad"}, expect=400, json={"vectors": "nope"})


def test_metrics_use_qdrant_names(http: httpx.Client) -> None:
    http.get("/collections")
    response = http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    lines = response.text.splitlines()
    for prefix in (
        'app_info{name="qdrant",version="',
        "collections_total ",
        "collections_vector_total ",
        'rest_responses_total{method="GET",endpoint="/collections",status="200"} ',
        'rest_responses_fail_total{method="GET",endpoint="/collections",status="200"} 0',
        'rest_responses_avg_duration_seconds{method="GET",endpoint="/collections",status="200"} ',
        'rest_responses_duration_seconds_bucket{method="GET",endpoint="/collections",le="+Inf"} ',
        'rest_responses_duration_seconds_count{method="GET",endpoint="/collections"} ',
    ):
        assert any(line.startswith(prefix) for line in lines), prefix
    assert "# TYPE rest_responses_duration_seconds histogram" in lines


# --- (c) the API key ------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/collections", "/metrics", "/collections/x/snapshots"])
def test_api_key_is_required(standin: Standin, path: str) -> None:
    assert _request("GET", standin.url + path).status_code == 401
    assert _request("GET", standin.url + path, headers={"api-key": "wrong"}).status_code == 401
    with_key = _request("GET", standin.url + path, headers={"api-key": API_KEY})
    as_bearer = _request("GET", standin.url + path, headers={"Authorization": f"Bearer {API_KEY}"})
    assert with_key.status_code == as_bearer.status_code != 401


def test_api_key_guards_writes(standin: Standin) -> None:
    body = {"vectors": {"size": 2, "distance": "Dot"}}
    response = _request("PUT", f"{standin.url}/collections/sneaky", json=body)
    assert response.status_code == 401
    assert "API key" in response.text
    check = _request(
        "GET", f"{standin.url}/collections/sneaky/exists", headers={"api-key": API_KEY}
    )
    assert check.json()["result"] == {"exists": False}


@pytest.mark.parametrize("path", ["/", "/healthz", "/livez", "/readyz"])
def test_health_endpoints_need_no_key(standin: Standin, path: str) -> None:
    assert _request("GET", standin.url + path).status_code == 200


# --- (d) snapshots --------------------------------------------------------------------


def test_snapshot_restores_points_exactly(
    client: QdrantClient, http: httpx.Client, standin: Standin
) -> None:
    name = "snapshot_roundtrip"
    client.create_collection(name, vectors_config=models.VectorParams(size=3, distance="Cosine"))
    client.create_payload_index(name, "tenant_id", models.PayloadSchemaType.KEYWORD)
    points = [
        models.PointStruct(id=i, vector=[i * 0.37 - 1.1, 0.71, 1 / (i + 3)], payload={"i": i})
        for i in range(40)
    ]
    client.upsert(name, points=points, wait=True)

    def everything() -> bytes:
        body = {"limit": 100, "with_payload": True, "with_vector": True}
        scrolled = http.post(f"/collections/{name}/points/scroll", json=body)
        return json.dumps(scrolled.json()["result"], sort_keys=True).encode()

    before = everything()
    snapshot = client.create_snapshot(name)
    assert snapshot is not None
    assert [s.name for s in client.list_snapshots(name)] == [snapshot.name]
    data = http.get(f"/collections/{name}/snapshots/{snapshot.name}").content
    assert _sha256(data) == snapshot.checksum and len(data) == snapshot.size

    client.delete_collection(name)
    upload = http.post(
        f"/collections/{name}/snapshots/upload",
        params={"priority": "snapshot"},
        files={"snapshot": (snapshot.name, data, "application/octet-stream")},
    )
    assert upload.status_code == 200, upload.text
    assert everything() == before
    assert client.get_collection(name).payload_schema["tenant_id"].points == 0

    client.upsert(name, points=[models.PointStruct(id=99, vector=[1, 2, 3])], wait=True)
    location = (standin.snapshots_path / name / snapshot.name).as_uri()
    assert client.recover_snapshot(name, location=location, wait=True)
    assert everything() == before  # point 99 is gone again


def test_corrupted_snapshot_is_refused(client: QdrantClient, http: httpx.Client) -> None:
    name = "snapshot_corrupted"
    client.create_collection(name, vectors_config=models.VectorParams(size=2, distance="Dot"))
    client.upsert(name, points=[models.PointStruct(id=1, vector=[1.0, 2.0])], wait=True)
    snapshot = client.create_snapshot(name)
    assert snapshot is not None
    data = http.get(f"/collections/{name}/snapshots/{snapshot.name}").content
    client.upsert(name, points=[models.PointStruct(id=2, vector=[3.0, 4.0])], wait=True)

    middle = len(data) // 2
    corrupted = data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1 :]
    for content, params in ((corrupted, {}), (data, {"checksum": "0" * 64})):
        response = http.post(
            f"/collections/{name}/snapshots/upload",
            params=params,
            files={"snapshot": ("x.snapshot", content, "application/octet-stream")},
        )
        assert response.status_code == 400, response.text
        assert response.json()["status"]["error"]
    assert client.count(name).count == 2  # the collection was left as it was

    outside = Path(__file__).as_uri()
    response = http.put(f"/collections/{name}/snapshots/recover", json={"location": outside})
    assert response.status_code == 400


# --- (g) what Qdrant's engine (qdrant-edge) brings -----------------------------------


@pytest.fixture(scope="module")
def workload() -> wl.Workload:
    """Tenants with glob characters, quotes and SQL metacharacters in their names."""
    return wl.generate(11, tenants=4, items_per_tenant=12, vector_dim=8)


def _tenant_filter(tenant: str) -> models.Filter:
    return models.Filter(
        must=[models.FieldCondition(key="tenant_id", match=models.MatchValue(value=tenant))]
    )


def test_tenant_filters_run_on_the_payload_index(
    client: QdrantClient, workload: wl.Workload
) -> None:
    name = "tenants_indexed"
    client.create_collection(name, vectors_config=models.VectorParams(size=8, distance="Dot"))
    tenant_index = models.KeywordIndexParams(type=models.KeywordIndexType.KEYWORD, is_tenant=True)
    client.create_payload_index(name, "tenant_id", field_schema=tenant_index, wait=True)
    assert wl.write_qdrant(client, workload, name) == len(workload.qdrant)

    # the index is edge's own (Qdrant's keyword index with its tenant flag), and it holds
    # every point: the count is the index's, not one the stand-in works out by scanning
    index = client.get_collection(name).payload_schema["tenant_id"]
    assert index.data_type == models.PayloadSchemaType.KEYWORD
    assert index.params is not None and index.params.is_tenant is True
    assert index.points == len(workload.qdrant)

    for tenant in workload.tenants:
        expected = {p.id: p for p in workload.qdrant if p.payload["tenant_id"] == tenant}
        only = _tenant_filter(tenant)
        assert client.count(name, count_filter=only).count == len(expected)
        scrolled, offset = client.scroll(name, scroll_filter=only, limit=100, with_vectors=True)
        assert offset is None
        assert {str(r.id): r.payload for r in scrolled} == {
            i: p.payload for i, p in expected.items()
        }
        probe = next(iter(expected.values()))
        hits = client.query_points(name, query=list(probe.vector), query_filter=only, limit=100)
        assert {str(hit.id) for hit in hits.points} == set(expected)
        assert all(hit.payload == expected[str(hit.id)].payload for hit in hits.points)
    assert wl.verify_qdrant(client, workload, name) == []


def test_data_survives_a_killed_standin(tmp_path: Path, spawn: Any, workload: wl.Workload) -> None:
    """SIGKILL, no flush: what was acknowledged with wait=true is replayed from edge's WAL."""
    port = free_port()
    first = spawn(tmp_path, port)
    name = "crash_safe"
    with contextlib.closing(QdrantClient(url=first.url, api_key=API_KEY)) as client:
        client.create_collection(
            name, vectors_config=models.VectorParams(size=8, distance="Cosine")
        )
        client.create_payload_index(name, "tenant_id", models.PayloadSchemaType.KEYWORD, wait=True)
        wl.write_qdrant(client, workload, name)
        snapshot = client.create_snapshot(name, wait=True)
        assert snapshot is not None
        before = client.scroll(name, limit=1000, with_vectors=True)[0]
    first.process.kill()
    assert first.process.wait(timeout=START_TIMEOUT_S) == -signal.SIGKILL

    second = spawn(tmp_path, port)
    with contextlib.closing(QdrantClient(url=second.url, api_key=API_KEY)) as client:
        assert client.scroll(name, limit=1000, with_vectors=True)[0] == before
        tenant = workload.tenants[0]
        expected = sum(p.payload["tenant_id"] == tenant for p in workload.qdrant)
        assert client.count(name, count_filter=_tenant_filter(tenant)).count == expected
        assert client.get_collection(name).payload_schema["tenant_id"].points == len(before)
        assert wl.verify_qdrant(client, workload, name) == []
        assert [s.name for s in client.list_snapshots(name)] == [snapshot.name]
    assert second.terminate() == 0


def test_snapshot_recovers_into_a_new_collection(
    client: QdrantClient, http: httpx.Client, workload: wl.Workload
) -> None:
    source, copy = "snapshot_source", "snapshot_copy"
    client.create_collection(source, vectors_config=models.VectorParams(size=8, distance="Cosine"))
    client.create_payload_index(source, "tenant_id", models.PayloadSchemaType.KEYWORD, wait=True)
    wl.write_qdrant(client, workload, source)
    snapshot = client.create_snapshot(source, wait=True)
    assert snapshot is not None
    data = http.get(f"/collections/{source}/snapshots/{snapshot.name}").content
    assert _sha256(data) == snapshot.checksum

    assert not client.collection_exists(copy)
    upload = http.post(
        f"/collections/{copy}/snapshots/upload",
        params={"checksum": snapshot.checksum, "wait": "true"},
        files={"snapshot": (snapshot.name, data, "application/octet-stream")},
    )
    assert upload.status_code == 200, upload.text

    def points(name: str) -> dict[str, tuple[Any, list[float]]]:
        records = client.scroll(name, limit=1000, with_payload=True, with_vectors=True)[0]
        return {str(r.id): (r.payload, r.vector) for r in records}

    original, restored = points(source), points(copy)
    assert len(original) == len(workload.qdrant)
    assert restored.keys() == original.keys()
    for point_id, (payload, vector) in original.items():
        assert restored[point_id][0] == payload
        assert restored[point_id][1] == pytest.approx(vector, rel=1e-6, abs=1e-7)
        # against what was written too: COSINE stores the unit vector of it
        written = next(p.vector for p in workload.qdrant if p.id == point_id)
        norm = sum(x * x for x in written) ** 0.5
        assert vector == pytest.approx([x / norm for x in written], rel=1e-6, abs=1e-7)
    copied = client.get_collection(copy)
    assert copied.config.params.vectors == client.get_collection(source).config.params.vectors
    assert copied.payload_schema["tenant_id"].points == len(original)
    assert client.list_snapshots(copy) == []  # the snapshot stays with its own collection


FILTER_POINTS = [
    {
        "id": 1,
        "vector": {"dense": [1.0, 0.0], "sparse": {"indices": [0, 7], "values": [1.0, 0.5]}},
        "payload": {
            "tenant_id": "acme",
            "rank": 1,
            "score": 0.5,
            "at": "2026-01-01T00:00:00Z",
            "tags": ["a", "b"],
            "place": {"lon": 13.4, "lat": 52.5},
            "notes": [{"kind": "fact", "n": 1}],
            "text": "the quick brown fox",
        },
    },
    {
        "id": 2,
        "vector": {"dense": [0.0, 1.0]},
        "payload": {"tenant_id": "acme", "rank": 5, "tags": ["c"], "notes": [{"kind": "chat"}]},
    },
    {
        "id": str(uuid.UUID(int=3)),
        "vector": {"dense": [0.6, 0.8], "sparse": {"indices": [7], "values": [2.0]}},
        "payload": {"tenant_id": "glob*star", "rank": 9, "at": "2027-06-01T12:00:00Z"},
    },
]
# (filter, ids it selects): every condition edge_filters converts
FILTER_CASES: list[tuple[dict[str, Any], set[Any]]] = [
    ({"must": [{"key": "tenant_id", "match": {"any": ["glob*star"]}}]}, {str(uuid.UUID(int=3))}),
    ({"must": [{"key": "tenant_id", "match": {"except": ["acme"]}}]}, {str(uuid.UUID(int=3))}),
    ({"must": [{"key": "rank", "range": {"gte": 2, "lt": 9}}]}, {2}),
    ({"must": [{"key": "at", "range": {"gt": "2026-06-01T00:00:00Z"}}]}, {str(uuid.UUID(int=3))}),
    ({"must": [{"key": "tags", "values_count": {"gte": 2}}]}, {1}),
    ({"must": [{"is_empty": {"key": "tags"}}]}, {str(uuid.UUID(int=3))}),
    ({"must_not": [{"has_id": [1, str(uuid.UUID(int=3))]}]}, {2}),
    ({"must": [{"has_vector": "sparse"}]}, {1, str(uuid.UUID(int=3))}),
    (
        {
            "should": [
                {"key": "rank", "match": {"value": 1}},
                {"key": "rank", "match": {"value": 5}},
            ]
        },
        {1, 2},
    ),
    (
        {
            "min_should": {
                "conditions": [
                    {"key": "tenant_id", "match": {"value": "acme"}},
                    {"key": "rank", "range": {"gt": 3}},
                ],
                "min_count": 2,
            }
        },
        {2},
    ),
    (
        {
            "must": [
                {
                    "nested": {
                        "key": "notes",
                        "filter": {"must": [{"key": "kind", "match": {"value": "fact"}}]},
                    }
                }
            ]
        },
        {1},
    ),
    (
        {
            "must": [
                {
                    "key": "place",
                    "geo_radius": {"center": {"lon": 13.40, "lat": 52.52}, "radius": 5000.0},
                }
            ]
        },
        {1},
    ),
    ({"must": [{"key": "text", "match": {"text": "brown"}}]}, {1}),
    (
        {"must": [{"must_not": [{"key": "tenant_id", "match": {"value": "acme"}}]}]},
        {str(uuid.UUID(int=3))},
    ),
]


def test_filters_and_queries_run_on_edge(api: Api) -> None:
    """Each REST filter condition and query kind the stand-in maps, on named dense + sparse
    vectors, with the bodies checked against the OpenAPI document."""
    where = {"collection_name": "edge_mapping"}
    body = {
        "vectors": {"dense": {"size": 2, "distance": "Dot"}},
        "sparse_vectors": {"sparse": {}},
        "metadata": {"owner": "memops"},
    }
    api.call("PUT", C, path=where, body=body)
    for field_name, schema in (
        ("rank", "integer"),
        ("text", {"type": "text", "tokenizer": "word"}),
    ):
        index = {"field_name": field_name, "field_schema": schema}
        api.call("PUT", C + "/index", path=where, body=index, params={"wait": "true"})
    upsert = {"points": FILTER_POINTS}
    api.call("PUT", C + "/points", path=where, body=upsert, params={"wait": "true"})
    info = api.result("GET", C, path=where)
    assert info["config"]["metadata"] == {"owner": "memops"}
    assert info["payload_schema"]["text"]["params"] == {"type": "text", "tokenizer": "word"}

    for rest_filter, expected in FILTER_CASES:
        found = api.result("POST", C + "/points/scroll", path=where, body={"filter": rest_filter})
        assert {p["id"] for p in found["points"]} == expected, rest_filter
        counted = api.result("POST", C + "/points/count", path=where, body={"filter": rest_filter})
        assert counted == {"count": len(expected)}, rest_filter

    def query(body: dict[str, Any]) -> list[Any]:
        return [
            hit["id"]
            for hit in api.result("POST", C + "/points/query", path=where, body=body)["points"]
        ]

    assert query({"query": [1.0, 0.0], "using": "dense"}) == [1, str(uuid.UUID(int=3)), 2]
    # by point id: its stored vector, with the point itself left out of the hits
    assert query({"query": 1, "using": "dense"}) == [str(uuid.UUID(int=3)), 2]
    sparse = {"query": {"indices": [7], "values": [1.0]}, "using": "sparse"}
    assert query(sparse) == [str(uuid.UUID(int=3)), 1]
    by_rank = {"query": {"order_by": {"key": "rank", "direction": "desc"}}, "limit": 2}
    assert query(by_rank) == [str(uuid.UUID(int=3)), 2]
    fused = {
        "prefetch": [
            {"query": [0.0, 1.0], "using": "dense", "limit": 2},
            {"query": {"indices": [0], "values": [1.0]}, "using": "sparse"},
        ],
        "query": {"fusion": "rrf"},
    }
    assert set(query(fused)) == {1, 2, str(uuid.UUID(int=3))}
    assert len(query({"query": {"sample": "random"}, "limit": 2})) == 2

    refused = {"query": {"recommend": {"positive": [1]}}, "using": "dense"}
    error = api.call("POST", C + "/points/query", path=where, body=refused, expect=400)
    assert "not supported by the stand-in" in error.json()["status"]["error"]
    wrong_dim = {"points": [{"id": 9, "vector": {"dense": [1.0, 2.0, 3.0]}}]}
    error = api.call("PUT", C + "/points", path=where, body=wrong_dim, expect=400)
    assert "dimension" in error.json()["status"]["error"]
    api.call("DELETE", C, path=where)


def test_failed_restore_leaves_the_collection_and_no_leftovers(tmp_path: Path) -> None:
    """In process, on real edge shards: a restore is built aside and swapped in only whole."""
    store = Store(tmp_path)
    try:
        config = models.CreateCollection(vectors=models.VectorParams(size=2, distance="Dot"))
        store.create("kept", config)
        store.upsert(
            "kept", models.PointsList(points=[models.PointStruct(id=1, vector=[1.0, 2.0])])
        )
        bad = CollectionDump(
            {"vectors": {"size": 2, "distance": "Dot"}},
            {},
            [{"id": 2, "vector": [1.0, 2.0]}, {"id": 3, "vector": [1.0, 2.0, 3.0]}],
        )
        with pytest.raises(ApiError) as refused:
            store.restore("kept", bad)
        assert refused.value.status == 400 and "dimension" in refused.value.message
        assert store.retrieve("kept", [1, 2]) == [{"id": 1, "payload": {}}]
        leftovers = [p.name for p in (tmp_path / "collections").iterdir()]
        assert leftovers == ["kept"]
    finally:
        store.close()


# --- (e) restart, (f) config errors ---------------------------------------------------


def test_data_survives_restart(tmp_path: Path, spawn: Any) -> None:
    port = free_port()
    first = spawn(tmp_path, port)
    name = "durable"
    with contextlib.closing(
        QdrantClient(url=first.url, api_key=API_KEY, check_compatibility=False)
    ) as client:
        client.create_collection(name, vectors_config=models.VectorParams(size=4, distance="Dot"))
        client.create_payload_index(name, "tenant_id", models.PayloadSchemaType.KEYWORD)
        client.upsert(name, points=POINTS, wait=True)
    assert first.terminate() == 0
    assert "storage closed" in first.log()

    # the restarted server takes its key from the environment, like Qdrant
    second = spawn(tmp_path, port, QDRANT__SERVICE__API_KEY="rotated-key")
    old_key = _request("GET", f"{second.url}/collections", headers={"api-key": API_KEY})
    assert old_key.status_code == 401
    with contextlib.closing(
        QdrantClient(url=second.url, api_key="rotated-key", check_compatibility=False)
    ) as client:
        records = client.retrieve(name, [p.id for p in POINTS], with_vectors=True)
        assert sorted((str(r.id), r.vector, r.payload) for r in records) == sorted(
            (str(p.id), p.vector, p.payload) for p in POINTS
        )
        assert set(client.get_collection(name).payload_schema) == {"tenant_id"}
    assert second.terminate() == 0

    log = first.log()
    assert API_KEY not in log and "rotated-key" not in second.log()
    access_lines = [line for line in log.splitlines() if "qdrant_standin.access" in line]
    assert sum('"PUT /collections/durable/points' in line for line in access_lines) == 1


def _run_standin(config: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        standin_command(config),
        env=standin_env(**env),
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT_S,
    )


def test_missing_config_exits_2(tmp_path: Path) -> None:
    result = _run_standin(tmp_path / "absent.yaml")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "absent.yaml" in result.stderr


@pytest.mark.parametrize(
    "text",
    ["storage: [not, a, mapping]\n", "service: {http_port: many}\n", "{unclosed: [\n", "- a\n"],
)
def test_invalid_config_exits_2(tmp_path: Path, text: str) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(text)
    result = _run_standin(config)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("qdrant-standin: ")


def test_port_in_use_exits_1(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        result = _run_standin(write_config(tmp_path, busy.getsockname()[1]))
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "cannot listen" in result.stderr


# --- the archive the Qdrant role installs ---------------------------------------------


def test_archive_is_reproducible_and_laid_out(tmp_path: Path) -> None:
    first, first_sha = build_standin_archive(tmp_path / "one")
    second, second_sha = build_standin_archive(tmp_path / "two")
    assert first.name == ARCHIVE_NAME
    assert first_sha == second_sha == _sha256(first.read_bytes())
    assert first.read_bytes() == second.read_bytes()

    with tarfile.open(first) as tar:
        members = {member.name: member for member in tar.getmembers()}
        names = list(members)
        launcher = _read(tar, "qdrant")
        marker = _read(tar, "STANDIN")
        requirements = _read(tar, "requirements.txt")
    assert names == sorted(names)
    sources = standin_source_dir()
    expected_modules = {f"qdrant_standin/{path.name}" for path in sources.glob("*.py")}
    assert {"qdrant", "STANDIN", "requirements.txt", "qdrant_standin"} <= set(names)
    assert expected_modules <= set(names)
    assert not [name for name in names if "__pycache__" in name or name.endswith(".pyc")]
    assert "qdrant_standin/requirements.txt" not in names
    assert members["qdrant"].mode & stat.S_IXUSR and launcher.startswith(b"#!/bin/sh\n")
    assert b'exec "$here/venv/bin/python" -m qdrant_standin "$@"' in launcher
    assert marker.count(b"\n") == 1
    assert requirements == (sources / "requirements.txt").read_bytes()
    assert b"qdrant-client==1.20.0" in requirements
    assert {member.mtime for member in members.values()} == {members["qdrant"].mtime}


def test_archive_launcher_runs_the_standin(tmp_path: Path) -> None:
    archive, _ = build_standin_archive(tmp_path)
    install = tmp_path / "install"
    with tarfile.open(archive) as tar:
        tar.extractall(install, filter="data")
    # what the role's `python3 -m venv` + pip provide, borrowed from the test environment
    python = install / "venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    python.chmod(0o755)
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}

    version = subprocess.run(
        [str(install / "qdrant"), "--version"], env=env, capture_output=True, text=True
    )
    assert version.returncode == 0, version.stderr
    assert version.stdout.startswith("qdrant-standin ")
    missing = subprocess.run(
        [str(install / "qdrant"), "--config-path", str(tmp_path / "nope.yaml")],
        env=env,
        capture_output=True,
        text=True,
    )
    assert missing.returncode == 2 and "nope.yaml" in missing.stderr


def test_cli_prints_path_and_sha256(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    standin_cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["standin-archive", "--out", str(tmp_path)])
    assert args.handler(args) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["path"] == str(tmp_path / ARCHIVE_NAME)
    assert printed["sha256"] == _sha256(Path(printed["path"]).read_bytes())


# --- helpers --------------------------------------------------------------------------


def _request(method: str, url: str, **kwargs: Any) -> httpx.Response:
    """One request straight to the loopback server (never through a proxy from the env)."""
    kwargs.setdefault("timeout", 10)
    return httpx.request(method, url, trust_env=False, **kwargs)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _read(tar: tarfile.TarFile, name: str) -> bytes:
    extracted = tar.extractfile(name)
    assert extracted is not None
    return extracted.read()
