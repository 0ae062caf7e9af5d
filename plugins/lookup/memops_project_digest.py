"""Lookup ``memops.stack.memops_project_digest``: one digest of the memops code that deploys
the stack.

Part of each role's deploy fingerprint (see plugins/modules/memops_fingerprint.py):
a new memops version (roles, playbooks, templates, the Python package, the Qdrant stand-in)
makes every role run in full once, even when no setting changed. The roles and plugins are
those of the collection this plugin belongs to (the checkout's, or an installed memops.stack),
the rest those of the memops package on the controller.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from ansible.plugins.lookup import LookupBase

from memops.paths import PROJECT_DIR

DOCUMENTATION = r"""
name: memops_project_digest
short_description: sha256 over the memops files a deploy depends on
description:
  - Hashes the relative path and content of every file under the project's roles, playbooks,
    templates, alerts, dashboards, plugins, memops and qdrant_standin directories.
"""

DIRECTORIES = ("roles", "playbooks", "templates", "alerts", "dashboards", "plugins", "memops")
DIRECTORIES += ("qdrant_standin",)
COLLECTION_DIRECTORIES = frozenset({"roles", "plugins"})
SKIPPED_PARTS = frozenset({"__pycache__", ".pytest_cache"})
# plugins/lookup/ -> the collection's root: the checkout, or an installed memops.stack
COLLECTION_DIR = Path(__file__).resolve().parents[2]


def project_digest(project_dir: Path = PROJECT_DIR, collection_dir: Path | None = None) -> str:
    """Hash DIRECTORIES: roles and plugins under ``collection_dir`` (default ``project_dir``),
    the others under ``project_dir``; a directory that is not there counts as empty."""
    digest = hashlib.sha256()
    for directory in DIRECTORIES:
        base = project_dir
        if collection_dir is not None and directory in COLLECTION_DIRECTORIES:
            base = collection_dir
        for path in sorted((base / directory).rglob("*")):
            if not path.is_file() or SKIPPED_PARTS.intersection(path.parts):
                continue
            digest.update(str(path.relative_to(base)).encode() + b"\0")
            digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


class LookupModule(LookupBase):
    def run(self, terms: list[Any], variables: Any = None, **kwargs: Any) -> list[str]:
        return [project_digest(PROJECT_DIR, COLLECTION_DIR)]
