"""Lookup ``memops_project_digest``: one digest of the memops code that deploys the stack.

Part of each role's deploy fingerprint (see roles/memops_service/library/memops_fingerprint.py):
a new memops version (roles, playbooks, templates, the Python package, the Qdrant stand-in)
makes every role run in full once, even when no setting changed.
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
SKIPPED_PARTS = frozenset({"__pycache__", ".pytest_cache"})


def project_digest(project_dir: Path = PROJECT_DIR) -> str:
    digest = hashlib.sha256()
    for directory in DIRECTORIES:
        for path in sorted((project_dir / directory).rglob("*")):
            if not path.is_file() or SKIPPED_PARTS.intersection(path.parts):
                continue
            digest.update(str(path.relative_to(project_dir)).encode() + b"\0")
            digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


class LookupModule(LookupBase):
    def run(self, terms: list[Any], variables: Any = None, **kwargs: Any) -> list[str]:
        return [project_digest()]
