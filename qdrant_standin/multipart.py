"""Read one file field out of a ``multipart/form-data`` body (the snapshot upload)."""

from __future__ import annotations

from email.message import Message

from qdrant_standin.protocol import ApiError


def form_file(content_type: str, body: bytes, field: str) -> bytes:
    """The content of form field ``field``, or a 400 when the body has none."""
    boundary = _boundary(content_type)
    delimiter = b"--" + boundary
    for part in body.split(delimiter)[1:]:
        if part.startswith(b"--"):
            break  # the closing delimiter
        head, separator, content = part.partition(b"\r\n\r\n")
        if not separator:
            continue
        if _field_name(head) == field:
            # the CRLF before the next delimiter belongs to the delimiter, not to the content
            return content.removesuffix(b"\r\n")
    raise ApiError(400, f"Format error in multipart body: no `{field}` field")


def _boundary(content_type: str) -> bytes:
    message = Message()
    message["content-type"] = content_type
    if message.get_content_type() != "multipart/form-data":
        raise ApiError(400, "Format error in multipart body: expected multipart/form-data")
    boundary = message.get_param("boundary")
    if not isinstance(boundary, str) or not boundary:
        raise ApiError(400, "Format error in multipart body: no boundary")
    return boundary.encode("latin-1")


def _field_name(head: bytes) -> str | None:
    for line in head.decode("latin-1").split("\r\n"):
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-disposition":
            message = Message()
            message["content-disposition"] = value.strip()
            found = message.get_param("name", header="content-disposition")
            return found if isinstance(found, str) else None
    return None
