"""Where memops keeps things: the project tree and each inventory's state directory.

The one place that computes the project root; everything else imports it from here.
"""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent
INVENTORY_DIR = PROJECT_DIR / "inventory"
PLAYBOOK_DIR = PROJECT_DIR / "playbooks"
ROLES_DIR = PROJECT_DIR / "roles"
TEMPLATES_DIR = PROJECT_DIR / "templates"
ANSIBLE_CONFIG = PROJECT_DIR / "ansible.cfg"
STATE_ROOT = PROJECT_DIR / ".state"


def state_dir_for(inventory_name: str) -> Path:
    """Controller-side state of one inventory (``MEMOPS_STATE_DIR`` overrides it)."""
    override = os.environ.get("MEMOPS_STATE_DIR")
    if override:
        return Path(override).resolve()
    return STATE_ROOT / inventory_name


def shown(path: Path) -> str:
    """``path`` relative to the project when it is inside it, for messages."""
    try:
        return str(path.relative_to(PROJECT_DIR))
    except ValueError:
        return str(path)
