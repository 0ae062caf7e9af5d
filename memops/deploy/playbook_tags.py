"""The tags a playbook knows, read from its YAML and its roles' task files.

``invoke deploy --tags bogus`` would otherwise run nothing and report success:
Ansible silently skips every task when no tag matches.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from memops.paths import PLAYBOOK_DIR, ROLES_DIR

# Ansible's own tag words, always accepted.
SPECIAL_TAGS = frozenset({"all", "always", "never", "tagged", "untagged"})


@cache
def known_tags(playbook: str, roles_dir: Path = ROLES_DIR) -> frozenset[str]:
    """Every literal tag in playbooks/<playbook>.yml and in the tasks of the roles."""
    files = [PLAYBOOK_DIR / f"{playbook}.yml"]
    files += sorted(roles_dir.glob("*/tasks/*.yml")) + sorted(roles_dir.glob("*/handlers/*.yml"))
    tags: set[str] = set(SPECIAL_TAGS)
    for file in files:
        tags.update(_tags_in(yaml.safe_load(file.read_text(encoding="utf-8"))))
    return frozenset(tags)


def _tags_in(node: Any) -> Iterator[str]:
    if isinstance(node, list):
        for item in node:
            yield from _tags_in(item)
    elif isinstance(node, dict):
        for key, value in node.items():
            if key == "tags":
                values = value if isinstance(value, list) else str(value).split(",")
                yield from (str(v).strip() for v in values if "{{" not in str(v))
            else:
                yield from _tags_in(value)
