"""Every inventory resolves every secret the roles it deploys require, from one source.

The secrets are the roles' ``no_log`` options without a default (``meta/argument_specs.yml``)
of the roles ``playbooks/deploy.yml`` runs on a group the inventory has hosts in. The
inventories of this machine (local, tests, benchmarks) generate theirs with the lookups of
``inventory/generated_secrets.yml``, which each links as ``group_vars/all/generated_secrets.yml``:
a new secret is added there, once. Staging and production take theirs from Ansible Vault.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from memops.deploy.inventory import InventoryLoader

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT / "inventory" / "generated_secrets.yml"
INVENTORIES = sorted(
    path.parent
    for base in ("inventory", "tests/inventories", "benchmarks/inventories")
    for path in (ROOT / base).glob("*/hosts.yml")
)
VAULTED = {"staging", "production"}
EXAMPLE_VAULT_PASSWORD = "memops-example-vault"  # documented in README and in the vault files


def role_secrets() -> dict[str, set[str]]:
    """Role name -> its options that are secrets (no_log) and have no default."""
    found: dict[str, set[str]] = {}
    for spec in ROOT.glob("roles/*/meta/argument_specs.yml"):
        options = yaml.safe_load(spec.read_text())["argument_specs"]["main"].get("options", {})
        found[spec.parent.parent.name] = {
            name
            for name, option in options.items()
            if option.get("no_log") and not option.get("default")
        }
    return found


def deployed_roles() -> dict[str, set[str]]:
    """Inventory group -> the roles playbooks/deploy.yml runs on it (FQCNs by their last part)."""
    plays = yaml.safe_load((ROOT / "playbooks" / "deploy.yml").read_text())
    found: dict[str, set[str]] = {}
    for play in plays:
        for role in play.get("roles", []):
            name = role["role"] if isinstance(role, dict) else role
            found.setdefault(play["hosts"], set()).add(name.rsplit(".", 1)[-1])
    return found


def groups_with_hosts(inventory: Path) -> dict[str, str]:
    """Group -> its first host, for the groups of the inventory's hosts.yml that have hosts."""
    tree = yaml.load((inventory / "hosts.yml").read_text(), Loader=InventoryLoader)
    found: dict[str, str] = {}

    def walk(name: str, group: dict[str, Any]) -> None:
        hosts = list((group or {}).get("hosts") or {})
        if hosts:
            found[name] = hosts[0]
        for child, sub in ((group or {}).get("children") or {}).items():
            walk(child, sub)

    walk("all", tree["all"])
    return found


def required_secrets(inventory: Path) -> tuple[str, list[str]]:
    """A host of the inventory and the secrets the roles on its groups require."""
    secrets, roles = role_secrets(), deployed_roles()
    groups = groups_with_hosts(inventory)
    wanted = {
        name for group in groups for role in roles.get(group, ()) for name in secrets.get(role, ())
    }
    return next(iter(groups.values())), sorted(wanted)


def test_the_roles_declare_the_secrets_the_inventories_are_checked_for():
    secrets = role_secrets()
    assert {"redis_password", "redis_app_password", "redis_monitor_password"} <= secrets["redis"]
    assert "postgresql_ops_password" in secrets["postgresql"]
    assert "qdrant_api_key" in secrets["qdrant"]
    assert {"redis", "postgresql", "qdrant"} <= set(deployed_roles())


def test_every_generated_secret_is_spelled_once():
    """Only inventory/generated_secrets.yml holds password lookups; the inventories link it."""
    spelled = [
        str(path.relative_to(ROOT))
        for inventory in INVENTORIES
        for path in inventory.glob("group_vars/**/*.y*ml")
        if not path.is_symlink() and "lookup('ansible.builtin.password'" in path.read_text()
    ]
    assert spelled == []
    for inventory in INVENTORIES:
        if inventory.name in VAULTED:
            continue
        link = inventory / "group_vars" / "all" / "generated_secrets.yml"
        assert link.is_symlink() and link.resolve() == SHARED, inventory
    shared = yaml.safe_load(SHARED.read_text())
    files = [value.split("/secrets/")[1].split("'")[0] for value in shared.values()]
    assert files == list(shared), "each secret has its own file, named after it"


@pytest.mark.parametrize("inventory", INVENTORIES, ids=lambda path: path.name)
def test_an_inventory_resolves_every_secret_its_roles_require(
    inventory: Path, tmp_path: Path
) -> None:
    host, wanted = required_secrets(inventory)
    assert wanted, f"{inventory.name}: no role with secrets on its groups?"
    extra = []
    if inventory.name in VAULTED:
        password = tmp_path / "vault-pass"
        password.write_text(EXAMPLE_VAULT_PASSWORD + "\n")
        extra = ["--vault-password-file", str(password)]
    state = tmp_path / "state"
    done = subprocess.run(
        [
            str(Path(sys.executable).with_name("ansible")),
            "-i", str(inventory), host, "-o", "-m", "ansible.builtin.debug",
            "-a", "msg={{ {" + ", ".join(f"'{n}': {n}" for n in wanted) + "} | to_json }}",
            "-e", f"memops_state_dir={state}",
            "-e", f"ansible_python_interpreter={sys.executable}",
            *extra,
        ],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, "ANSIBLE_LOCAL_TEMP": str(tmp_path / "ansible-tmp")},
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    values = json.loads(json.loads(done.stdout.split("=>", 1)[1])["msg"])
    short = {name: len(str(value)) for name, value in values.items() if len(str(value)) < 16}
    assert sorted(values) == wanted and short == {}
    generated = {n: v for n, v in values.items() if n in yaml.safe_load(SHARED.read_text())}
    assert len(set(generated.values())) == len(generated), "two secrets share a value"
    if inventory.name not in VAULTED:
        assert {p.name for p in (state / "secrets").iterdir()} == set(generated)
