"""A key ring file encrypted with Ansible Vault: opened with Ansible's vault password, kept vaulted.

The ring is encrypted with the real `ansible-vault` command and read back by it:
memops and Ansible agree on the format both ways. Without a vault password the
ring is refused in one line that names the setting.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from memops.keys.ring import KeyRingError, is_vaulted, load_keyring, new_keyring, save_keyring
from memops.keys.vault import PASSWORD_FILE_ENV

ANSIBLE_VAULT = Path(sys.executable).with_name("ansible-vault")


@pytest.fixture
def password_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "vault-pass"
    path.write_text("correct horse battery staple\n")
    path.chmod(0o600)
    monkeypatch.setenv(PASSWORD_FILE_ENV, str(path))
    return path


def ansible_vault(*args: str, password: Path) -> str:
    done = subprocess.run(
        [str(ANSIBLE_VAULT), *args, "--vault-password-file", str(password)],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout


def test_a_ring_vaulted_by_ansible_is_read_and_stays_vaulted(
    tmp_path: Path, password_file: Path
) -> None:
    ring = new_keyring()
    path = tmp_path / "keyring.json"
    save_keyring(path, ring)
    ansible_vault("encrypt", "--encrypt-vault-id", "default", str(path), password=password_file)
    path.chmod(0o600)
    assert is_vaulted(path) and load_keyring(path) == ring

    rotated = ring.with_new_key()
    save_keyring(path, rotated)  # as keys.rotate saves it

    assert is_vaulted(path) and path.stat().st_mode & 0o777 == 0o600
    assert ring.active.encode() not in path.read_bytes()  # not even the key ids in clear
    seen = json.loads(ansible_vault("view", str(path), password=password_file))
    assert seen["active"] == rotated.active and set(seen["keys"]) == set(rotated.keys)
    assert load_keyring(path) == rotated


def test_a_new_ring_can_be_created_vaulted(tmp_path: Path, password_file: Path) -> None:
    path = tmp_path / "keyring.json"
    ring = new_keyring()
    save_keyring(path, ring, vault=True)
    assert is_vaulted(path)
    assert json.loads(ansible_vault("view", str(path), password=password_file))["active"] == (
        ring.active
    )


def test_without_a_vault_password_the_ring_is_refused_in_one_line(
    tmp_path: Path, password_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "keyring.json"
    save_keyring(path, new_keyring(), vault=True)
    monkeypatch.delenv(PASSWORD_FILE_ENV)
    with pytest.raises(KeyRingError, match=PASSWORD_FILE_ENV) as caught:
        load_keyring(path)
    assert len(str(caught.value).splitlines()) == 1

    wrong = tmp_path / "wrong-pass"
    wrong.write_text("not it\n")
    monkeypatch.setenv(PASSWORD_FILE_ENV, str(wrong))
    with pytest.raises(KeyRingError, match="ansible vault") as caught:
        load_keyring(path)
    assert "not it" not in str(caught.value)
