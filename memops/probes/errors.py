"""Turn network exceptions into reason codes and safe one-line messages.

Client libraries wrap socket errors in their own exception types, but keep the
original one in ``__cause__`` or ``__context__``; walking that chain lets the
Redis, PostgreSQL and Qdrant probes share one mapping for the common cases.
"""

from __future__ import annotations

import errno
import socket
import ssl
from collections.abc import Iterable, Iterator

from memops.probes.result import CONNECT_REFUSED, DNS_ERROR, HOST_UNREACHABLE, TIMEOUT, TLS_ERROR

_MAX_MESSAGE = 240
# Masking a one- or two-character secret would garble ordinary words.
_MIN_SECRET_TO_MASK = 4
_UNREACHABLE = {errno.EHOSTUNREACH, errno.ENETUNREACH}


def exception_chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` followed by its causes/contexts, each once."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def classify_socket_error(exc: BaseException) -> tuple[str, str] | None:
    """(reason code, message) when a standard socket/TLS error is in the chain."""
    for err in exception_chain(exc):
        if isinstance(err, ssl.SSLError):  # includes certificate verification errors
            return TLS_ERROR, f"TLS error: {err}"
        if isinstance(err, socket.gaierror):
            return DNS_ERROR, f"name resolution failed: {err.strerror or err}"
        if isinstance(err, ConnectionRefusedError):
            return CONNECT_REFUSED, "connection refused"
        if isinstance(err, OSError) and err.errno in _UNREACHABLE:
            return HOST_UNREACHABLE, err.strerror or "host unreachable"
        if isinstance(err, TimeoutError):
            return TIMEOUT, "timed out"
    return None


def host_did_not_answer(timeout_s: float) -> tuple[str, str]:
    """The reason of a connection that was not made within the timeout."""
    return HOST_UNREACHABLE, f"no connection within {timeout_s:g}s: the host does not answer"


def safe_message(message: object, secrets: Iterable[str | None] = ()) -> str:
    """First line of ``message``, shortened, with every known secret masked."""
    text = str(message).strip().splitlines()[0] if str(message).strip() else ""
    for secret in secrets:
        if secret and len(secret) >= _MIN_SECRET_TO_MASK:
            text = text.replace(secret, "***")
    if len(text) > _MAX_MESSAGE:
        text = text[: _MAX_MESSAGE - 3] + "..."
    return text
