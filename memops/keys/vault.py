"""A key ring file encrypted with Ansible Vault (``ansible-vault encrypt keyring.json``).

memops opens and rewrites such a file in process with Ansible's own vault code
and the vault password Ansible is configured with (``ANSIBLE_VAULT_PASSWORD_FILE``
or ``vault_password_file`` in ansible.cfg; a file or an executable script):
never a password in argv, never a decrypted copy on disk. A rewritten ring is
encrypted again under the same vault id, so a vaulted ring stays vaulted.

What "the key ring in Ansible Vault" means here: the ring *file* is a vault
file. A ring inlined in group_vars as a ``!vault`` variable is not read:
``keys.rotate`` must save the ring with its new key before it rewrites a value,
and memops does not rewrite an operator's inventory files.
"""

from __future__ import annotations

from typing import Any

from memops.errors import Refused

VAULT_HEADER = b"$ANSIBLE_VAULT;"
PASSWORD_FILE_ENV = "ANSIBLE_VAULT_PASSWORD_FILE"


class VaultError(Refused):
    """The vault file cannot be opened or written; the message names the file, never a secret."""


def is_vaulted(data: bytes) -> bool:
    return data.lstrip().startswith(VAULT_HEADER)


def vault_id_of(data: bytes) -> str | None:
    """The vault id label in a vault file's header (format 1.2), if any."""
    fields = data.lstrip().split(b"\n", 1)[0].strip().split(b";")
    return fields[3].decode("utf-8", "replace") if len(fields) > 3 and fields[3] else None


def decrypt(data: bytes, where: str) -> bytes:
    from ansible.errors import AnsibleError

    try:
        return bytes(_vault(where).decrypt(data))
    except AnsibleError as exc:
        raise VaultError(f"{where}: ansible vault: {_first_line(exc)}") from None


def encrypt(plaintext: bytes, where: str, *, vault_id: str | None = None) -> bytes:
    from ansible.errors import AnsibleError

    try:
        vault = _vault(where)
        return bytes(vault.encrypt(plaintext, vault.secrets[0][1], vault_id=vault_id))
    except AnsibleError as exc:
        raise VaultError(f"{where}: ansible vault: {_first_line(exc)}") from None


def _vault(where: str) -> Any:
    """A VaultLib with the configured password; VaultError when none is configured."""
    from ansible import constants
    from ansible.parsing.dataloader import DataLoader
    from ansible.parsing.vault import VaultLib, get_file_vault_secret

    # Asked each time (the environment first, then ansible.cfg), not Ansible's cached constant.
    password_file = constants.config.get_config_value("DEFAULT_VAULT_PASSWORD_FILE")
    if not password_file:
        raise VaultError(
            f"{where} is encrypted with Ansible Vault and no vault password is configured: "
            f"set {PASSWORD_FILE_ENV} (or vault_password_file in ansible.cfg)"
        )
    loader = DataLoader()
    secret = get_file_vault_secret(filename=str(password_file), vault_id="default", loader=loader)
    secret.load()
    return VaultLib([("default", secret)])


def _first_line(exc: Exception) -> str:
    text = str(getattr(exc, "message", "") or exc)
    return text.strip().splitlines()[0] if text.strip() else type(exc).__name__
