"""Basic auth of the monitoring's HTTP listeners: the bcrypt filter that writes their web config.

The filter ``memops.stack.memops_bcrypt`` must give the same hash for the same password and
host on every run (a second deploy changes nothing), a hash the exporter-toolkit accepts
(``promtool check web-config``), and another one for another host or password.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import bcrypt
import pytest
import yaml
from ansible.errors import AnsibleFilterError

from memops.paths import PROJECT_DIR

FILTER = PROJECT_DIR / "plugins" / "filter" / "memops_bcrypt.py"
PROMTOOL = shutil.which("promtool", path=f"{Path(sys.executable).parent}:{os.environ['PATH']}")


def _module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("memops_bcrypt_filter", FILTER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_hash_is_the_same_for_the_same_password_and_host() -> None:
    hash_ = _module().memops_bcrypt
    first = hash_("s3cret-Password", "mon-1")
    assert first == hash_("s3cret-Password", "mon-1")
    assert first.startswith("$2b$10$") and len(first) == 60
    assert bcrypt.checkpw(b"s3cret-Password", first.encode())
    assert not bcrypt.checkpw(b"another", first.encode())


def test_another_host_or_password_gets_another_salt() -> None:
    hash_ = _module().memops_bcrypt
    base = hash_("s3cret-Password", "mon-1")
    salts = {h[:29] for h in (base, hash_("s3cret-Password", "mon-2"), hash_("other", "mon-1"))}
    assert len(salts) == 3


def test_the_salt_is_no_fast_digest_of_the_password() -> None:
    """The salt comes from a first bcrypt hash, not from SHA-256 of the password: a guess is
    checked against it no faster than against the hash itself."""
    import base64
    import hashlib

    module = _module()
    salt = module.memops_bcrypt("pw", "h")[7:29]
    quick = hashlib.sha256(b"pw").digest()[:16]
    assert salt != base64.b64encode(quick).rstrip(b"=").translate(module._TO_BCRYPT).decode()


def test_the_cost_is_a_parameter_and_bad_input_is_refused() -> None:
    hash_ = _module().memops_bcrypt
    assert hash_("pw", "h", rounds=4).startswith("$2b$04$")
    for bad in ("", None):
        with pytest.raises(AnsibleFilterError):
            hash_(bad, "h")
    with pytest.raises(AnsibleFilterError):
        hash_("pw", "h", rounds=3)
    with pytest.raises(AnsibleFilterError):
        hash_("x" * 73, "h")


@pytest.mark.skipif(PROMTOOL is None, reason="no promtool (./bootstrap.sh unpacks it)")
def test_promtool_accepts_the_web_config_the_roles_write(tmp_path: Path) -> None:
    config = tmp_path / "web.yml"
    users = {"memops": _module().memops_bcrypt("s3cret-Password", "mon-1")}
    config.write_text(yaml.safe_dump({"basic_auth_users": users}))
    assert PROMTOOL is not None
    done = subprocess.run(
        [PROMTOOL, "check", "web-config", str(config)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_ansible_finds_the_filter_in_the_collection(tmp_path: Path) -> None:
    """As the roles call it: memops.stack.memops_bcrypt, from the checkout's collection."""
    done = subprocess.run(
        [
            str(Path(sys.executable).with_name("ansible")),
            "localhost", "-o", "-m", "ansible.builtin.debug",
            "-a", "msg={{ 'pw' | memops.stack.memops_bcrypt('mon-1') | to_json }}",
            "-e", f"ansible_python_interpreter={sys.executable}",
        ],
        cwd=PROJECT_DIR, capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, "ANSIBLE_LOCAL_TEMP": str(tmp_path / "ansible-tmp")},
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    value = json.loads(json.loads(done.stdout.split("=>", 1)[1])["msg"])
    assert value == _module().memops_bcrypt("pw", "mon-1")
