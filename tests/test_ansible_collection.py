"""memops' roles and plugins as the Ansible collection memops.stack (galaxy.yml).

Built with ansible-galaxy, the tarball holds the roles, the plugins, meta/runtime.yml and
the collection's pages, nothing else of the repository. Installed into a temporary
collections path, a role of it runs in check mode against localhost from there, with the
checkout on no collection path: its tasks, the roles it calls (memops.stack.memops_service,
.memops_packages) and the plugins they use (the memops_fingerprint module, the lookups)
all come from the installed copy.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tarfile
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

PROJECT_DIR = Path(__file__).resolve().parents[1]
BIN_DIR = Path(sys.executable).parent
GALAXY = yaml.safe_load((PROJECT_DIR / "galaxy.yml").read_text(encoding="utf-8"))
NAME = f"{GALAXY['namespace']}.{GALAXY['name']}"
# What the tarball may hold besides roles/ and plugins/ (and the directories above them).
OTHER_FILES = {
    "MANIFEST.json",
    "FILES.json",
    "CHANGELOG.md",
    "meta/runtime.yml",
    "docs/ansible-collection.md",
}
ROLE = "node_exporter"  # calls memops_service and memops_packages; uses the module and lookups
PLAYBOOK = """\
- name: Run a role of the installed collection
  hosts: localhost
  gather_facts: true
  gather_subset: [min]
  tasks:
    - name: Where the collection's lookups find its roles
      ansible.builtin.debug:
        msg: "ROLE-TEMPLATES {{{{ query('{name}.memops_role_templates', 'redis') | join(' ') }}}}"

    - name: The role, by its FQCN
      ansible.builtin.import_role:
        name: {name}.{role}
"""


def _run(argv: list[str | Path], cwd: Path, env: dict[str, str] | None = None, timeout=300):
    done = subprocess.run(
        [str(arg) for arg in argv],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, f"{argv}: exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done


def _isolated_env(tmp: Path, collections: Path) -> dict[str, str]:
    """No ANSIBLE_* of the caller, no ansible.cfg of the checkout, only ``collections``
    on the collection path (the dependencies come from the ansible package's own)."""
    config = tmp / "ansible.cfg"
    config.write_text("[defaults]\nstdout_callback = ansible.builtin.default\n")
    env = {key: value for key, value in os.environ.items() if not key.startswith("ANSIBLE_")}
    return env | {
        "ANSIBLE_CONFIG": str(config),
        "ANSIBLE_COLLECTIONS_PATH": str(collections),
        "ANSIBLE_FORCE_COLOR": "0",
        "ANSIBLE_NOCOLOR": "1",
    }


@pytest.fixture(scope="module")
def tarball(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("collection-build")
    galaxy = BIN_DIR / "ansible-galaxy"
    _run([galaxy, "collection", "build", "--output-path", out, PROJECT_DIR], cwd=out)
    built = out / f"{GALAXY['namespace']}-{GALAXY['name']}-{GALAXY['version']}.tar.gz"
    assert built.is_file(), sorted(out.iterdir())
    return built


@pytest.fixture(scope="module")
def installed(tarball: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The collections path the collection is installed into."""
    tmp = tmp_path_factory.mktemp("collection-install")
    collections = tmp / "collections"
    env = _isolated_env(tmp, collections)
    galaxy = BIN_DIR / "ansible-galaxy"
    _run([galaxy, "collection", "install", tarball, "-p", collections, "--offline"], tmp, env)
    yield collections


def _members(tarball: Path) -> list[str]:
    with tarfile.open(tarball) as archive:
        return sorted(m.name.removeprefix("./") for m in archive.getmembers() if m.isfile())


def test_the_version_is_memops_version() -> None:
    pyproject = tomllib.loads((PROJECT_DIR / "pyproject.toml").read_text(encoding="utf-8"))
    assert GALAXY["version"] == pyproject["project"]["version"]


# A module (a task's key), a lookup or a filter named by FQCN.
FQCN_USE = re.compile(
    r"^\s*(?:- )?([a-z_]+)\.([a-z_]+)\.\w+:(?:\s|$)|(?:lookup|query)\('([a-z_]+)\.([a-z_]+)\.\w+'"
    r"|\|\s*([a-z_]+)\.([a-z_]+)\.\w+",
    re.MULTILINE,
)


def test_every_collection_the_roles_use_is_a_dependency() -> None:
    used = {
        ".".join(part for part in match.groups() if part)
        for path in (PROJECT_DIR / "roles").rglob("*.yml")
        for match in FQCN_USE.finditer(path.read_text(encoding="utf-8"))
    }
    assert {"community.postgresql", "community.crypto", "ansible.builtin", NAME} <= used
    used -= {"ansible.builtin", NAME}
    assert used <= set(GALAXY["dependencies"]), used - set(GALAXY["dependencies"])


def test_the_tarball_holds_the_roles_and_plugins_and_nothing_else(tarball: Path) -> None:
    members = _members(tarball)
    strays = [
        m for m in members if m not in OTHER_FILES and m.split("/")[0] not in {"roles", "plugins"}
    ]
    assert strays == []
    assert not [m for m in members if "__pycache__" in m or m.endswith(".pyc")]
    wanted = sorted(
        str(path.relative_to(PROJECT_DIR))
        for top in ("roles", "plugins")
        for path in (PROJECT_DIR / top).rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    )
    assert [m for m in members if m.split("/")[0] in {"roles", "plugins"}] == wanted
    assert set(members) >= OTHER_FILES


def test_the_installed_collection_is_found_there(installed: Path, tmp_path: Path) -> None:
    env = _isolated_env(tmp_path, installed)
    listed = _run([BIN_DIR / "ansible-galaxy", "collection", "list", NAME], tmp_path, env).stdout
    assert str(installed / "ansible_collections") in listed
    assert str(PROJECT_DIR) not in listed
    manifest = json.loads(
        (installed / "ansible_collections/memops/stack/MANIFEST.json").read_text()
    )
    assert manifest["collection_info"]["version"] == GALAXY["version"]


def test_a_role_of_the_installed_collection_runs_in_check_mode(
    installed: Path, tmp_path: Path
) -> None:
    root = installed / "ansible_collections" / GALAXY["namespace"] / GALAXY["name"]
    play = tmp_path / "play.yml"
    play.write_text(PLAYBOOK.format(name=NAME, role=ROLE))
    variables = {
        "ansible_connection": "local",
        "ansible_python_interpreter": sys.executable,
        # another instance than any stack on this machine; check mode changes nothing anyway
        "node_exporter_instance_name": "collection-test",
        "node_exporter_port": 39199,
        "node_exporter_textfile_dir": str(tmp_path / "textfile"),
        "memops_service_fingerprint_dir": str(tmp_path / "deployed"),
    }
    argv = [BIN_DIR / "ansible-playbook", "-i", "localhost,", "--check", "-vv", play]
    argv += ["-e", json.dumps(variables)]
    out = _run(argv, tmp_path, _isolated_env(tmp_path, installed), timeout=600).stdout

    recap = [line for line in out.splitlines() if line.startswith("localhost ")]
    assert recap and " failed=0 " in recap[-1] and " unreachable=0 " in recap[-1], out[-3000:]
    # Every task ran from the installed copy, none from the checkout.
    task_paths = re.findall(r"^task path: (.+?):\d+$", out, re.MULTILINE)
    role_paths = [path for path in task_paths if path != str(play)]
    assert role_paths and all(path.startswith(str(root) + "/roles/") for path in role_paths)
    assert not [path for path in task_paths if path.startswith(str(PROJECT_DIR))]
    for role in (ROLE, "memops_service", "memops_packages"):
        assert any(path.startswith(f"{root}/roles/{role}/tasks/") for path in role_paths), role
    assert f"TASK [{NAME}.memops_service : Ask whether it runs and changed" in out
    # The collection's lookups read the collection's own roles.
    shown = re.search(r"ROLE-TEMPLATES ([^\"\n]+)", out)
    templates = shown.group(1).split() if shown else []
    assert templates and all(
        path.startswith(f"{root}/roles/redis/templates/") for path in templates
    )
