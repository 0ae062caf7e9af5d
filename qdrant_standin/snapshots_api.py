"""Collection snapshot endpoints: create, list, download, delete, upload and recover."""

from __future__ import annotations

import logging
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from qdrant_client.http import models

from qdrant_standin import snapshot_format
from qdrant_standin.access import MANAGE
from qdrant_standin.context import Context
from qdrant_standin.multipart import form_file
from qdrant_standin.protocol import ApiError, Request, Response, bad_request, not_found
from qdrant_standin.router import Route

LOG = logging.getLogger("qdrant_standin.snapshots")
DOWNLOAD_TIMEOUT_S = 60


def list_snapshots(ctx: Context, request: Request) -> list[dict[str, Any]]:
    name = _existing(ctx, request)
    return ctx.snapshots.list_snapshots(name)


def create_snapshot(ctx: Context, request: Request) -> dict[str, Any]:
    name = request.params["name"]
    data = snapshot_format.pack(name, ctx.store.export(name))
    description = ctx.snapshots.save(name, data)
    LOG.info("created snapshot %s of collection %s", description["name"], name)
    return description


def download_snapshot(ctx: Context, request: Request) -> Response:
    path = ctx.snapshots.path(_existing(ctx, request), request.params["snapshot_name"])
    headers = {"Content-Disposition": f'attachment; filename="{path.name}"'}
    return Response(200, path.read_bytes(), "application/octet-stream", headers)


def delete_snapshot(ctx: Context, request: Request) -> bool:
    ctx.snapshots.delete(_existing(ctx, request), request.params["snapshot_name"])
    return True


def upload_snapshot(ctx: Context, request: Request) -> bool:
    _priority(request.query.get("priority"))
    data = form_file(request.headers.get("content-type", ""), request.body, "snapshot")
    _recover(ctx, request.params["name"], data, request.query.get("checksum"))
    return True


def recover_snapshot(ctx: Context, request: Request) -> bool:
    body = request.model(models.SnapshotRecover)
    data = _fetch(ctx, body.location, body.api_key)
    _recover(ctx, request.params["name"], data, body.checksum)
    return True


def _recover(ctx: Context, collection: str, data: bytes, checksum: str | None) -> None:
    """Replace ``collection`` with the snapshot in ``data`` once every check has passed."""
    actual = snapshot_format.sha256(data)
    if checksum and checksum.strip().lower() != actual:
        raise ApiError(400, f"Checksum mismatch: expected {checksum}, got {actual}")
    try:
        manifest, dump = snapshot_format.unpack(data)
    except snapshot_format.SnapshotError as exc:
        raise bad_request(f"invalid snapshot: {exc}") from None
    ctx.store.restore(collection, dump)
    LOG.info(
        "recovered collection %s from a snapshot of %s (%d points)",
        collection,
        manifest.get("collection"),
        len(dump.points),
    )


def _fetch(ctx: Context, location: str, api_key: str | None) -> bytes:
    """Snapshot bytes from a ``file://`` path (inside snapshots_path) or an http(s) URL."""
    url = urlsplit(location)
    if url.scheme == "file":
        return ctx.snapshots.local_file(Path(unquote(url.path))).read_bytes()
    if url.scheme in ("http", "https"):
        headers = {"api-key": api_key} if api_key else {}
        try:
            with urllib.request.urlopen(
                urllib.request.Request(location, headers=headers), timeout=DOWNLOAD_TIMEOUT_S
            ) as response:
                return response.read()
        except urllib.error.HTTPError as exc:
            raise bad_request(f"snapshot download failed: HTTP {exc.code}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise bad_request(f"snapshot download failed: {exc}") from None
    raise bad_request(f"unsupported snapshot location scheme {url.scheme!r}")


def _existing(ctx: Context, request: Request) -> str:
    name = request.params["name"]
    if not ctx.store.exists(name):
        raise not_found(f"Collection `{name}` doesn't exist!")
    return name


def _priority(value: str | None) -> None:
    if value is None:
        return
    try:
        models.SnapshotPriority(value)
    except ValueError:
        raise ApiError(400, f"Format error in query parameters: priority={value!r}") from None


ROUTES = [
    Route("GET", "/collections/{name}/snapshots", list_snapshots),
    Route("POST", "/collections/{name}/snapshots", create_snapshot, MANAGE),
    Route("POST", "/collections/{name}/snapshots/upload", upload_snapshot, MANAGE),
    Route("PUT", "/collections/{name}/snapshots/recover", recover_snapshot, MANAGE),
    Route("GET", "/collections/{name}/snapshots/{snapshot_name}", download_snapshot),
    Route("DELETE", "/collections/{name}/snapshots/{snapshot_name}", delete_snapshot, MANAGE),
]
