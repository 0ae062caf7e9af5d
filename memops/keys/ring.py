"""The key ring of encrypted memory values: every key a value may be sealed with.

One JSON file, mode 0600, owned by whoever runs memops::

    {"version": 1, "active": "<key id>", "keys": {"<key id>": "<base64 of 32 bytes>", ...}}

New values are sealed with the ``active`` key; every other key stays in the ring
so that values not yet re-encrypted remain readable (``keys.rotate`` moves them,
``keys.retire`` removes a key once nothing uses it). A key's id is its
fingerprint (``memops.backup.crypto.key_id_of``), safe to print and to store
beside each value; the secrets themselves never leave this module in a message.

The file may be encrypted with Ansible Vault (``ansible-vault encrypt``, or
``invoke keys.init --vault``): it is opened with Ansible's vault password and
stays vaulted when rewritten (``memops.keys.vault``).

The file is named by the inventory (``memory_keyring_file``) or
``MEMOPS_KEYRING_FILE``; by default it is ``keyring.json`` in the state directory.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from memops.backup.crypto import key_id_of
from memops.errors import Refused
from memops.files import PRIVATE, write_atomic
from memops.keys import vault as keyring_vault

KEYRING_VAR = "memory_keyring_file"
KEYRING_ENV = "MEMOPS_KEYRING_FILE"
KEYRING_FILE = "keyring.json"
KEY_BYTES = 32
_VERSION = 1


class KeyRingError(Refused):
    """The key ring is missing, unsafe or malformed; the message names the file, never a key."""


@dataclass(frozen=True)
class KeyRing:
    active: str
    keys: Mapping[str, bytes] = field(repr=False)

    def __post_init__(self) -> None:
        if self.active not in self.keys:
            raise KeyRingError(f"active key {self.active} is not in the key ring")

    def secret(self, key_id: str) -> bytes | None:
        return self.keys.get(key_id)

    @property
    def active_secret(self) -> bytes:
        return self.keys[self.active]

    def with_new_key(self, secret: bytes | None = None) -> KeyRing:
        """This ring plus a new key (random unless given), which becomes the active one."""
        secret = secrets.token_bytes(KEY_BYTES) if secret is None else secret
        _check_secret(secret, "new key")
        key_id = key_id_of(secret)
        return KeyRing(key_id, {**self.keys, key_id: secret})

    def without_key(self, key_id: str) -> KeyRing:
        if key_id not in self.keys:
            raise KeyRingError(f"key {key_id} is not in the key ring")
        if key_id == self.active:
            raise KeyRingError(f"key {key_id} is the active key: rotate to a new key first")
        return KeyRing(self.active, {k: v for k, v in self.keys.items() if k != key_id})

    def to_json(self) -> str:
        keys = {k: base64.b64encode(v).decode("ascii") for k, v in sorted(self.keys.items())}
        return json.dumps({"version": _VERSION, "active": self.active, "keys": keys}, indent=2)


def new_keyring(secret: bytes | None = None) -> KeyRing:
    """A ring of one key (random unless given), active."""
    secret = secrets.token_bytes(KEY_BYTES) if secret is None else secret
    _check_secret(secret, "new key")
    return KeyRing(key_id_of(secret), {key_id_of(secret): secret})


def keyring_path(
    variables: Mapping[str, Any], state_dir: Path, environ: Mapping[str, str] | None = None
) -> Path:
    """Where the inventory's key ring lives (it may not exist yet)."""
    environ = os.environ if environ is None else environ
    given = variables.get(KEYRING_VAR) or environ.get(KEYRING_ENV)
    return Path(str(given)).expanduser() if given else state_dir / KEYRING_FILE


def load_keyring(path: Path) -> KeyRing | None:
    """The ring in ``path``; None when there is none; KeyRingError when it is unusable."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise KeyRingError(f"key ring {path}: {exc.strerror}") from None
    if mode & 0o077:
        raise KeyRingError(
            f"key ring {path} has mode {mode & 0o777:04o}: others may read it; chmod 600 it"
        )
    try:
        raw = path.read_bytes()
        if keyring_vault.is_vaulted(raw):
            raw = keyring_vault.decrypt(raw, f"key ring {path}")
        data = json.loads(raw.decode("utf-8"))
    except keyring_vault.VaultError as exc:
        raise KeyRingError(str(exc)) from None
    except (OSError, ValueError) as exc:
        raise KeyRingError(f"key ring {path}: unreadable ({type(exc).__name__})") from None
    return _parse(data, path)


def save_keyring(path: Path, ring: KeyRing, *, vault: bool | None = None) -> None:
    """Replace the ring file atomically (mode 0600): a reader sees the old ring or the new one.

    ``vault``: encrypt it with Ansible Vault (``memops.keys.vault``); None keeps
    what the file is now (a vaulted ring stays vaulted, under the same vault id).
    """
    text = (ring.to_json() + "\n").encode("utf-8")
    try:
        current = path.read_bytes() if vault is not False and path.exists() else b""
        if vault or (vault is None and keyring_vault.is_vaulted(current)):
            vault_id = keyring_vault.vault_id_of(current) if current else None
            text = keyring_vault.encrypt(text, f"key ring {path}", vault_id=vault_id)
    except keyring_vault.VaultError as exc:
        raise KeyRingError(str(exc)) from None
    except OSError as exc:
        raise KeyRingError(f"key ring {path}: {exc.strerror}") from None
    write_atomic(path, text, mode=PRIVATE)


def is_vaulted(path: Path) -> bool:
    """True when the ring file is encrypted with Ansible Vault."""
    try:
        with path.open("rb") as handle:
            return keyring_vault.is_vaulted(handle.read(64))
    except OSError:
        return False


def _parse(data: Any, path: Path) -> KeyRing:
    if not isinstance(data, dict) or data.get("version") != _VERSION:
        raise KeyRingError(f"key ring {path}: expected a version {_VERSION} key ring object")
    raw_keys, active = data.get("keys"), data.get("active")
    if not isinstance(raw_keys, dict) or not raw_keys or not isinstance(active, str):
        raise KeyRingError(f"key ring {path}: needs 'active' and a non-empty 'keys' object")
    keys: dict[str, bytes] = {}
    for key_id, text in raw_keys.items():
        try:
            secret = base64.b64decode(str(text), validate=True)
        except (binascii.Error, ValueError):
            raise KeyRingError(f"key ring {path}: key {key_id} is not base64") from None
        _check_secret(secret, f"key ring {path}: key {key_id}")
        if key_id_of(secret) != key_id:
            raise KeyRingError(f"key ring {path}: key {key_id} does not match its id")
        keys[key_id] = secret
    if active not in keys:
        raise KeyRingError(f"key ring {path}: active key {active} is not in the ring")
    return KeyRing(active, keys)


def _check_secret(secret: bytes, where: str) -> None:
    if len(secret) != KEY_BYTES:
        raise KeyRingError(f"{where}: expected {KEY_BYTES} bytes, got {len(secret)}")
