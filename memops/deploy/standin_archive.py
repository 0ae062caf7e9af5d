"""Package the Qdrant stand-in as an archive the Qdrant role installs like a release.

Layout at the root of ``qdrant-standin.tar.gz``::

    qdrant             POSIX sh launcher, same command line as the qdrant binary
    qdrant_standin/    the stand-in's Python sources
    requirements.txt   what it needs at run time
    STANDIN            marker: the role sees it, makes ``venv/`` and pip-installs requirements.txt

The launcher runs ``<install_dir>/venv/bin/python -m qdrant_standin "$@"`` with the
install dir on PYTHONPATH. The archive is reproducible: sorted entries, fixed
mtimes, owners and modes, and no timestamp in the gzip header, so the same
sources always give the same sha256.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import io
import tarfile
from pathlib import Path

ARCHIVE_NAME = "qdrant-standin.tar.gz"
PACKAGE = "qdrant_standin"
MTIME = 946684800  # 2000-01-01T00:00:00Z: any fixed time keeps the archive reproducible

LAUNCHER = """\
#!/bin/sh
# Qdrant stand-in (memops): takes the qdrant binary's arguments, e.g. --config-path FILE
here=$(dirname "$(readlink -f "$0")")
PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}" exec "$here/venv/bin/python" -m qdrant_standin "$@"
"""
MARKER = (
    "memops Qdrant stand-in: a subset of Qdrant's REST API on qdrant-edge (Qdrant's engine), "
    "for offline test machines only (not a Qdrant release)\n"
)


def standin_source_dir() -> Path:
    """Where the installed ``qdrant_standin`` package lives (found without importing it)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"the {PACKAGE} package is not installed beside memops")
    return Path(next(iter(spec.submodule_search_locations))).resolve()


def build_standin_archive(out_dir: Path, source_dir: Path | None = None) -> tuple[Path, str]:
    """Write ``out_dir/qdrant-standin.tar.gz``; return its path and sha256 hex digest."""
    files = _entries(source_dir or standin_source_dir())
    tar_bytes = io.BytesIO()
    with tarfile.open(fileobj=tar_bytes, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data, mode in files:
            if data is None:
                tar.addfile(_info(name, tarfile.DIRTYPE, 0, mode))
            else:
                tar.addfile(_info(name, tarfile.REGTYPE, len(data), mode), io.BytesIO(data))
    compressed = io.BytesIO()
    # filename="" and a fixed mtime keep the gzip header free of anything that varies
    with gzip.GzipFile(filename="", mode="wb", fileobj=compressed, mtime=MTIME) as stream:
        stream.write(tar_bytes.getvalue())

    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / ARCHIVE_NAME
    tmp = path.with_name(f".{ARCHIVE_NAME}.tmp")
    tmp.write_bytes(compressed.getvalue())
    tmp.replace(path)
    return path, hashlib.sha256(compressed.getvalue()).hexdigest()


def _entries(source_dir: Path) -> list[tuple[str, bytes | None, int]]:
    """(archive name, content or None for a directory, mode), sorted by name."""
    if not (source_dir / "__main__.py").is_file():
        raise FileNotFoundError(f"no Qdrant stand-in sources in {source_dir}")
    entries: list[tuple[str, bytes | None, int]] = [
        ("STANDIN", MARKER.encode(), 0o644),
        ("qdrant", LAUNCHER.encode(), 0o755),
        ("requirements.txt", (source_dir / "requirements.txt").read_bytes(), 0o644),
        (PACKAGE, None, 0o755),
    ]
    for path in sorted(source_dir.rglob("*")):
        relative = path.relative_to(source_dir)
        if _skipped(relative) or relative.as_posix() == "requirements.txt":
            continue
        name = f"{PACKAGE}/{relative.as_posix()}"
        if path.is_dir():
            entries.append((name, None, 0o755))
        elif path.is_file():
            entries.append((name, path.read_bytes(), 0o644))
    return sorted(entries, key=lambda entry: entry[0])


def _skipped(relative: Path) -> bool:
    return any(
        part == "__pycache__" or part.startswith(".") or part.endswith((".pyc", ".pyo"))
        for part in relative.parts
    )


def _info(name: str, kind: bytes, size: int, mode: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.size = size
    info.mode = mode
    info.mtime = MTIME
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    return info
