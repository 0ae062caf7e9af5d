"""Docker, debootstrap and tinyproxy taken out of Debian's packages, never installed.

``apt-get download`` + ``dpkg-deb -x`` into the lab's cache, as bootstrap.sh does for
promtool: the machine gets no Docker daemon, no proxy service and no package of the lab.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from memops.errors import Failed

PACKAGES = ("docker.io", "containerd", "runc", "tini", "tinyproxy-bin", "debootstrap")
_READY = ".unpacked"


class ToolsError(Failed):
    """The lab's tools could not be fetched or unpacked."""


def tools_root(cache: Path) -> Path:
    """Where the unpacked packages live (usr/bin, usr/sbin, usr/share/debootstrap)."""
    return cache / "tools"


def ensure_tools(cache: Path) -> Path:
    """Unpack the lab's packages into the cache once; return their root."""
    root = tools_root(cache)
    marker = root / _READY
    if marker.is_file() and marker.read_text(encoding="utf-8").split() == list(PACKAGES):
        return root
    for needed in ("apt-get", "dpkg-deb"):
        if shutil.which(needed) is None:
            raise ToolsError(f"lab: {needed} not found (the lab unpacks Debian packages)")
    shutil.rmtree(root, ignore_errors=True)
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache, prefix=".debs-") as downloads:
        fetched = subprocess.run(
            ["apt-get", "download", "-qq", "-o", "APT::Sandbox::User=root", *PACKAGES],
            cwd=downloads,
            capture_output=True,
            text=True,
            check=False,
        )
        if fetched.returncode != 0:
            last = (fetched.stderr.strip().splitlines() or ["no output"])[-1]
            raise ToolsError(f"lab: apt-get download {' '.join(PACKAGES)} failed: {last}")
        staging = Path(downloads) / "root"
        for deb in sorted(Path(downloads).glob("*.deb")):
            subprocess.run(["dpkg-deb", "-x", str(deb), str(staging)], check=True)
        staging.rename(root)
    (root / _READY).write_text(" ".join(PACKAGES) + "\n", encoding="utf-8")
    return root


def tool_path(root: Path) -> str:
    """PATH with the unpacked tools first (dockerd finds containerd, runc and docker-init)."""
    return os.pathsep.join(
        [str(root / "usr" / "bin"), str(root / "usr" / "sbin"), os.environ.get("PATH", "")]
    )
