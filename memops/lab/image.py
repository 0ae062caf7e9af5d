"""The lab hosts' image: Debian 12 from Debian's mirror with systemd, sshd and python3.

No registry is reachable, so the image is built here: ``debootstrap`` into a directory,
a few files that make it a host (sshd keys made at boot, key-only root login), then
``docker import``. Its tag is a digest of the recipe, so a second ``lab.up`` finds it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

from docker.errors import APIError, ImageNotFound

from memops.errors import Failed
from memops.lab.debian_tools import ensure_tools
from memops.lab.engine import Engine

SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
# What a real Debian 12 server has before Ansible's first run: an init, sshd, Python.
PACKAGES = (
    "systemd",
    "systemd-sysv",
    "dbus",
    "openssh-server",
    "python3",
    "python3-apt",
    "ca-certificates",
    "iproute2",
    "procps",
    "gnupg",
    "curl",
    "cron",
)
# Files written into the root file system before it is imported: path -> content.
HOST_FILES = {
    # Every host makes its own sshd keys at its first boot, not one set baked for all.
    "etc/systemd/system/ssh.service.d/memops-lab.conf": (
        "[Service]\nExecStartPre=\nExecStartPre=/usr/bin/ssh-keygen -A\n"
        "ExecStartPre=/usr/sbin/sshd -t\n"
    ),
    "etc/ssh/sshd_config.d/memops-lab.conf": (
        "PermitRootLogin prohibit-password\nPasswordAuthentication no\n"
    ),
}
REPOSITORY = "memops-lab/debian12"
# Bumped when _make_it_a_host changes what it does: part of the image's tag.
STEPS_VERSION = 2


class ImageError(Failed):
    """The lab image could not be built."""


def image_tag() -> str:
    """``repository:digest`` of the recipe: a changed recipe is a new image."""
    files = sorted(f"{path}={content}" for path, content in HOST_FILES.items())
    recipe = "\n".join([str(STEPS_VERSION), SUITE, MIRROR, *PACKAGES, *files])
    return f"{REPOSITORY}:{hashlib.sha256(recipe.encode()).hexdigest()[:12]}"


def ensure_image(engine: Engine, cache: Path, log_file: Path) -> tuple[str, bool]:
    """The image's tag, built when the engine lacks it; True when it was built now."""
    tag = image_tag()
    try:
        engine.client.images.get(tag)
        return tag, False
    except ImageNotFound:
        pass
    if os.geteuid() != 0:
        raise ImageError("lab: building the host image (debootstrap) needs root")
    tools = ensure_tools(cache)
    build = cache / "build"
    shutil.rmtree(build, ignore_errors=True)
    rootfs = build / "rootfs"
    with log_file.open("ab") as log:
        made = subprocess.run(
            [
                str(tools / "usr" / "sbin" / "debootstrap"),
                "--variant=minbase",
                f"--include={','.join(PACKAGES)}",
                SUITE,
                str(rootfs),
                MIRROR,
            ],
            stdout=log,
            stderr=log,
            env={**os.environ, "DEBOOTSTRAP_DIR": str(tools / "usr" / "share" / "debootstrap")},
            check=False,
        )
    if made.returncode != 0:
        shutil.rmtree(build, ignore_errors=True)
        raise ImageError(f"lab: debootstrap failed (exit {made.returncode}); see {log_file}")
    _make_it_a_host(rootfs)
    archive = build / "rootfs.tar"
    with tarfile.open(archive, "w") as tar:
        for entry in sorted(rootfs.iterdir()):
            tar.add(entry, arcname=entry.name)
    repository, _, version = tag.partition(":")
    engine.client.api.import_image(src=str(archive), repository=repository, tag=version)
    shutil.rmtree(build, ignore_errors=True)
    _remove_older_images(engine, tag)
    return tag, True


def _remove_older_images(engine: Engine, current: str) -> None:
    """Images of earlier recipes no container uses: nothing will start them again."""
    for image in engine.client.images.list(name=REPOSITORY):
        if image.id and current not in image.tags:
            with contextlib.suppress(APIError):  # still used by a container: it stays
                engine.client.images.remove(image.id)


def _make_it_a_host(rootfs: Path) -> None:
    for name in rootfs.glob("etc/ssh/ssh_host_*"):
        name.unlink()
    (rootfs / "etc" / "machine-id").write_text("", encoding="utf-8")  # made at first boot
    for relative, content in HOST_FILES.items():
        path = rootfs / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content, encoding="utf-8")
    wants = rootfs / "etc" / "systemd" / "system" / "multi-user.target.wants"
    wants.mkdir(parents=True, exist_ok=True)
    link = wants / "ssh.service"
    if not link.is_symlink():
        link.symlink_to("/lib/systemd/system/ssh.service")
    shutil.rmtree(rootfs / "var" / "cache" / "apt" / "archives", ignore_errors=True)
    (rootfs / "var" / "cache" / "apt" / "archives" / "partial").mkdir(parents=True)
