"""Lookup ``memops.stack.memops_role_options``: the option names a memops role declares in its
argument specs.

The deploy fingerprint hashes the values of exactly these options (see
roles/memops_service/vars/main.yml): the specs are the list of a role's inputs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from ansible.errors import AnsibleError
from ansible.plugins.lookup import LookupBase

# The roles of the collection this plugin belongs to: the checkout's roles/, or those of an
# installed memops.stack (plugins/lookup/ -> the collection's root).
ROLES_DIR = Path(__file__).resolve().parents[2] / "roles"

DOCUMENTATION = r"""
name: memops_role_options
short_description: Option names of a memops role, from its argument specs
description:
  - For each role name given, the sorted names of the options of all its entry points.
"""


def role_options(role: str, roles_dir: Path = ROLES_DIR) -> list[str]:
    spec_file = roles_dir / role / "meta" / "argument_specs.yml"
    try:
        specs = yaml.safe_load(spec_file.read_text(encoding="utf-8"))["argument_specs"]
    except (OSError, KeyError, TypeError, yaml.YAMLError) as exc:
        raise AnsibleError(
            f"memops_role_options: no argument specs for role {role!r}: {exc}"
        ) from exc
    names = {name for entry in specs.values() for name in (entry.get("options") or {})}
    return sorted(names)


class LookupModule(LookupBase):
    def run(self, terms: list[Any], variables: Any = None, **kwargs: Any) -> list[str]:
        return [name for role in terms for name in role_options(str(role))]
