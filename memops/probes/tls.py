"""One TLS context for every HTTP probe.

Building a verifying context loads the whole CA bundle (about 50 ms of CPU);
httpx does that for each new client. Probes run often and in parallel, so they
share one context, built on first use. SSLContext is safe to share between threads.
"""

from __future__ import annotations

import ssl
from functools import cache


@cache
def _verifying_context() -> ssl.SSLContext:
    return ssl.create_default_context()


def httpx_verify(verify_tls: bool) -> ssl.SSLContext | bool:
    """What to pass as httpx's ``verify``: the shared context, or False to skip checks."""
    return _verifying_context() if verify_tls else False
