"""The key ring file: private, well-formed, and never without its active key."""

from __future__ import annotations

import json
import os

import pytest

from memops.keys.ring import (
    KEYRING_ENV,
    KeyRingError,
    keyring_path,
    load_keyring,
    new_keyring,
    save_keyring,
)


def test_round_trip_keeps_every_key_and_the_active_one(tmp_path) -> None:
    ring = new_keyring().with_new_key()
    path = tmp_path / "ring.json"
    save_keyring(path, ring)
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert load_keyring(path) == ring
    assert load_keyring(tmp_path / "absent.json") is None


def test_a_ring_others_can_read_is_refused(tmp_path) -> None:
    path = tmp_path / "ring.json"
    save_keyring(path, new_keyring())
    path.chmod(0o644)
    with pytest.raises(KeyRingError, match="chmod 600"):
        load_keyring(path)


def test_a_key_that_does_not_match_its_id_is_refused_without_printing_it(tmp_path) -> None:
    ring = new_keyring()
    data = json.loads(ring.to_json())
    secret = data["keys"][ring.active]
    data["keys"] = {"0" * 16: secret}
    data["active"] = "0" * 16
    path = tmp_path / "ring.json"
    path.write_text(json.dumps(data))
    path.chmod(0o600)
    with pytest.raises(KeyRingError, match="does not match its id") as caught:
        load_keyring(path)
    assert secret not in str(caught.value)


def test_the_active_key_cannot_be_removed(tmp_path) -> None:
    ring = new_keyring()
    rotated = ring.with_new_key()
    assert rotated.active != ring.active and set(rotated.keys) == {ring.active, rotated.active}
    with pytest.raises(KeyRingError, match="active key"):
        rotated.without_key(rotated.active)
    assert set(rotated.without_key(ring.active).keys) == {rotated.active}


def test_the_path_comes_from_inventory_then_environment_then_state_dir(tmp_path) -> None:
    assert keyring_path({}, tmp_path, {}) == tmp_path / "keyring.json"
    assert keyring_path({}, tmp_path, {KEYRING_ENV: "/x/ring"}).as_posix() == "/x/ring"
    given = {"memory_keyring_file": "/y/ring"}
    assert keyring_path(given, tmp_path, {KEYRING_ENV: "/x/ring"}).as_posix() == "/y/ring"
