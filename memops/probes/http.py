"""Generic HTTP probe: GET one URL and expect one status (200 unless the target says otherwise).

For services whose health is a single endpoint: Prometheus and Alertmanager
(``/-/ready``), the exporters (``/health`` or their landing page). Redirects
are not followed: a health endpoint that redirects is misconfigured.
"""

from __future__ import annotations

import time

import httpx

from memops.deploy.targets import HttpTarget
from memops.probes.errors import classify_socket_error, host_did_not_answer, safe_message
from memops.probes.result import (
    AUTH_FAILED,
    NOT_READY,
    OK,
    TIMEOUT,
    UNEXPECTED_ERROR,
    ProbeResult,
    State,
    elapsed_ms,
    failure,
)
from memops.probes.tls import httpx_verify


def probe_http(target: HttpTarget, timeout_s: float) -> ProbeResult:
    started = time.perf_counter()
    headers = {}
    if target.bearer_token:
        headers["Authorization"] = f"Bearer {target.bearer_token}"
    if target.api_key:
        headers["api-key"] = target.api_key
    try:
        # trust_env=False: talk to the service directly, never via someone's HTTP(S)_PROXY.
        verify = httpx_verify(target.verify_tls)
        with httpx.Client(verify=verify, timeout=timeout_s, trust_env=False) as client:
            response = client.get(target.url, headers=headers)
    except httpx.ConnectTimeout:
        return failure(*host_did_not_answer(timeout_s), started)
    except httpx.TimeoutException as exc:
        return failure(TIMEOUT, f"timed out: {type(exc).__name__}", started)
    except Exception as exc:
        classified = classify_socket_error(exc)
        code, message = classified or (UNEXPECTED_ERROR, f"{type(exc).__name__}: {exc}")
        return failure(code, safe_message(message, target.secrets), started)

    status = response.status_code
    details = {"status": status}
    if status == target.expect_status:
        return ProbeResult(State.HEALTHY, elapsed_ms(started), (OK,), details)
    if status in (401, 403):
        message = f"GET returned HTTP {status} (check the credentials)"
        return failure(AUTH_FAILED, message, started, **details)
    if status == 503:
        body = safe_message(response.text[:100], target.secrets)
        return failure(NOT_READY, f"GET returned HTTP 503: {body}", started, **details)
    message = f"GET returned HTTP {status}, expected {target.expect_status}"
    return failure(UNEXPECTED_ERROR, message, started, **details)
