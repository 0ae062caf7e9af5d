"""Qdrant probe over its REST API: /readyz, then every collection's status."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import quote

import httpx

from memops.clients import qdrant_http
from memops.deploy.targets import QdrantTarget
from memops.probes import result as reason
from memops.probes.budget import Deadline
from memops.probes.errors import classify_socket_error, host_did_not_answer, safe_message
from memops.probes.result import ProbeResult, State, failure, from_findings


class _ProbeFailed(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def probe_qdrant(target: QdrantTarget, timeout_s: float) -> ProbeResult:
    started = time.perf_counter()
    deadline = Deadline(timeout_s)
    # The client ignores HTTP(S)_PROXY: a probe talks to the service directly.
    client = qdrant_http(target, timeout_s=timeout_s, send_api_key=False)
    headers = {"api-key": target.api_key} if target.api_key else {}
    try:
        with client:
            # /readyz is open without the API key, so it is checked first and alone.
            _get(client, "/readyz", deadline, {}, not_ready_on_503=True)
            listing = _get(client, "/collections", deadline, headers).json()
            names = [item["name"] for item in listing["result"]["collections"]]
            statuses = {}
            for name in names:
                info = _get(client, f"/collections/{quote(name, safe='')}", deadline, headers)
                statuses[name] = info.json()["result"]["status"]
    except _ProbeFailed as exc:
        return failure(exc.code, safe_message(exc, target.secrets), started)
    except httpx.ConnectTimeout:
        return failure(*host_did_not_answer(timeout_s), started)
    except httpx.TimeoutException as exc:
        return failure(reason.TIMEOUT, f"timed out: {type(exc).__name__}", started)
    except (KeyError, TypeError, ValueError) as exc:  # a body that is not Qdrant's JSON
        message = f"unexpected response: {type(exc).__name__}: {exc}"
        return failure(reason.UNEXPECTED_ERROR, safe_message(message, target.secrets), started)
    except Exception as exc:
        classified = classify_socket_error(exc)
        code, message = classified or (reason.UNEXPECTED_ERROR, f"{type(exc).__name__}: {exc}")
        return failure(code, safe_message(message, target.secrets), started)

    findings: dict[str, State] = {}
    not_green = {name: status for name, status in statuses.items() if status != "green"}
    if not_green:
        red = "red" in not_green.values()
        findings[reason.COLLECTION_NOT_GREEN] = State.FAILING if red else State.DEGRADED
    details: dict[str, Any] = {
        "ready": True,
        "collection_count": len(statuses),
        "collections": statuses,
    }
    return from_findings(findings, started, details)


def _get(
    client: httpx.Client,
    path: str,
    deadline: Deadline,
    headers: dict[str, str],
    not_ready_on_503: bool = False,
) -> httpx.Response:
    """GET ``path`` within what is left of the budget; non-200 raises _ProbeFailed."""
    if deadline.expired:
        raise _ProbeFailed(
            reason.TIMEOUT, f"time budget of {deadline.seconds:g}s spent before {path}"
        )
    response = client.get(path, headers=headers, timeout=deadline.remaining())
    status = response.status_code
    if status == 200:
        return response
    if status in (401, 403):
        raise _ProbeFailed(
            reason.AUTH_FAILED, f"GET {path} returned HTTP {status} (check the API key)"
        )
    if status == 503 and not_ready_on_503:
        raise _ProbeFailed(reason.NOT_READY, f"GET {path} returned HTTP 503: {response.text[:100]}")
    raise _ProbeFailed(reason.UNEXPECTED_ERROR, f"GET {path} returned HTTP {status}")
