"""Where backups go and how they are kept: the ``backup_*`` variables of an inventory.

The backup tasks read the plain values of the inventory's ``group_vars`` (a
templated value, ``{{ … }}``, is Ansible's to resolve and is ignored here);
S3 credentials and the encryption key may instead come from the environment
(``memops.backup.store.S3_VARS``, ``memops.backup.crypto.KEY_ENV``), never from argv.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from memops.backup.artifacts import BackupError
from memops.backup.crypto import BackupKey, load_key
from memops.backup.retention import Policy
from memops.backup.store import BackupStore, LocalStore, S3Settings, S3Store
from memops.deploy.inventory import Inventory, InventoryLoader

TARGET_KINDS = ("local", "s3")
BACKUP_DIR_NAME = "backups"


def inventory_vars(inventory: Inventory) -> dict[str, Any]:
    """The literal ``group_vars/all`` values of an inventory (templated ones left out)."""
    if inventory.path.is_file():
        return {}
    base = inventory.path / "group_vars"
    files = [base / "all.yml", base / "all.yaml", *sorted((base / "all").glob("*.y*ml"))]
    found: dict[str, Any] = {}
    for file in files:
        if not file.is_file():
            continue
        data = yaml.load(file.read_text(encoding="utf-8"), Loader=InventoryLoader) or {}
        if isinstance(data, dict):
            found.update((k, v) for k, v in data.items() if not (isinstance(v, str) and "{{" in v))
    return found


@dataclass(frozen=True)
class BackupSettings:
    variables: Mapping[str, Any]
    state_dir: Path

    @classmethod
    def of(cls, inventory: Inventory) -> BackupSettings:
        return cls(inventory_vars(inventory), inventory.state_dir)

    @property
    def default_target(self) -> str:
        return str(self.variables.get("backup_target") or "local")

    @property
    def local_dir(self) -> Path:
        given = self.variables.get("backup_local_dir")
        return Path(str(given)).expanduser() if given else self.state_dir / BACKUP_DIR_NAME

    @property
    def policy(self) -> Policy:
        defaults = Policy()
        return Policy(
            daily=self._count("backup_retention_daily", defaults.daily),
            weekly=self._count("backup_retention_weekly", defaults.weekly),
            namespace_days=self._count("backup_retention_namespace_days", defaults.namespace_days),
        )

    def _count(self, name: str, default: int) -> int:
        """A whole number of 0 or more; a one-line BackupError naming the variable otherwise."""
        value = self.variables.get(name, default)
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise BackupError(f"{name}: expected a whole number of 0 or more, got {value!r}")
        return value

    def store(self, target: str | None = None) -> BackupStore:
        """The store of ``target``, holding the key that opens its manifests' tenant names."""
        kind = target or self.default_target
        store: BackupStore
        if kind == "s3":
            store = S3Store(S3Settings.from_settings(self.variables))
        elif kind == "local":
            store = LocalStore(self.local_dir)
        else:
            raise BackupError(f"backup_target {kind!r}: expected one of {', '.join(TARGET_KINDS)}")
        store.key = self.key()
        return store

    def key(self) -> BackupKey | None:
        return load_key(self.variables)
