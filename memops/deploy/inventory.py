"""Find an inventory and check it before Ansible runs.

Ansible's own messages for a missing inventory or broken YAML are long and
easy to miss (it may even go on with an empty inventory); these checks turn
them into one line that names the file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import yaml

from memops.errors import BadInput
from memops.paths import INVENTORY_DIR, shown, state_dir_for


class InventoryError(BadInput):
    """The inventory is missing or cannot be parsed."""


@dataclass(frozen=True)
class Inventory:
    name: str
    path: Path  # a directory or a single hosts file

    @property
    def state_dir(self) -> Path:
        """Controller-side state of this inventory: secrets, targets.json, health, audit log."""
        return state_dir_for(self.name)


def inventory_argument(inventory: Inventory) -> str:
    """What to pass as ``--inventory`` to name ``inventory`` again: its name or its path."""
    if inventory.path.parent == INVENTORY_DIR.resolve():
        return inventory.name
    return str(inventory.path)


def resolve_inventory(spec: str) -> Inventory:
    """``spec`` is an inventory name under inventory/ (``local``) or a path."""
    if not spec:
        raise InventoryError("inventory: empty name")
    candidate = Path(spec)
    if not candidate.exists() and os.sep not in spec and (INVENTORY_DIR / spec).exists():
        candidate = INVENTORY_DIR / spec
    if not candidate.exists():
        known = ", ".join(sorted(p.name for p in INVENTORY_DIR.iterdir() if p.is_dir()))
        raise InventoryError(f"inventory {spec!r} not found (known inventories: {known})")
    path = candidate.resolve()
    check_yaml_files(path)
    name = path.name if path.is_dir() else path.parent.name
    return Inventory(name=name, path=path)


class _TolerantLoader(yaml.SafeLoader):
    """SafeLoader that accepts Ansible's tags (!vault, !unsafe) without decoding them."""


def _any_tag(loader: yaml.SafeLoader, _suffix: str, node: yaml.Node) -> object:
    if isinstance(node, yaml.ScalarNode):
        return loader.construct_scalar(node)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node)
    return loader.construct_mapping(node)  # type: ignore[arg-type]


_TolerantLoader.add_multi_constructor("!", _any_tag)
InventoryLoader = _TolerantLoader  # for readers of inventory values (memops.backup.settings)


def check_yaml_files(path: Path) -> None:
    """Parse every YAML file of the inventory; raise InventoryError on the first bad one."""
    files = (
        [path]
        if path.is_file()
        else sorted(p for p in path.rglob("*") if p.suffix in {".yml", ".yaml"} and p.is_file())
    )
    for file in files:
        try:
            yaml.load(file.read_text(encoding="utf-8"), Loader=_TolerantLoader)
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark
            where = f" at line {mark.line + 1} column {mark.column + 1}" if mark else ""
            raise InventoryError(f"{shown(file)}: malformed YAML{where}: {exc.problem}") from None
        except (yaml.YAMLError, OSError, UnicodeDecodeError) as exc:
            raise InventoryError(f"{shown(file)}: cannot read: {exc}") from None
