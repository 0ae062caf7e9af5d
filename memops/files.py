"""Atomic file writes: readers see the old content or the new one, never a partial file."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

PRIVATE = 0o600  # secrets, state, audit: the owner only
PUBLIC = 0o644  # rendered files and metrics other services read


@contextlib.contextmanager
def open_atomic(path: Path, *, mode: int = PRIVATE, fsync: bool = True) -> Iterator[BinaryIO]:
    """A binary handle on a temporary file beside ``path``, renamed over it on success.

    For content streamed in pieces (backup files of many GB). If the block raises,
    the temporary file is removed and ``path`` is untouched.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:  # mkstemp creates it 0600
            yield handle
            handle.flush()
            if fsync:
                os.fsync(handle.fileno())
        if mode != PRIVATE:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
        if fsync:
            fsync_dir(path.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def fsync_dir(directory: Path) -> None:
    """Make a rename in ``directory`` durable: without it, a crash can bring the old name back."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: str | bytes, *, mode: int = PRIVATE, fsync: bool = True) -> None:
    """Write ``data`` to a temporary file beside ``path``, then rename it over ``path``."""
    with open_atomic(path, mode=mode, fsync=fsync) as handle:
        handle.write(data.encode("utf-8") if isinstance(data, str) else data)


def write_private_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically, mode 0600."""
    write_atomic(path, text, mode=PRIVATE)
