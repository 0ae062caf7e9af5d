"""Lookup ``memops.stack.memops_role_templates``: the Jinja2 templates of a memops role, as
absolute paths.

The deploy fingerprint renders them (roles/memops_service/vars/main.yml): a template reads
settings of other roles too. Unlike ``fileglob`` it says nothing about a role without a
templates directory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ansible.plugins.lookup import LookupBase

# The roles of the collection this plugin belongs to (see memops_role_options).
ROLES_DIR = Path(__file__).resolve().parents[2] / "roles"

DOCUMENTATION = r"""
name: memops_role_templates
short_description: The templates/*.j2 files of memops roles
description:
  - For each role name given, the sorted absolute paths of its templates/*.j2 files.
"""


class LookupModule(LookupBase):
    def run(self, terms: list[Any], variables: Any = None, **kwargs: Any) -> list[str]:
        return [
            str(path)
            for role in terms
            for path in sorted((ROLES_DIR / str(role) / "templates").glob("*.j2"))
        ]
