"""Each role's meta/argument_specs.yml and defaults/main.yml say the same thing (no live stack).

Every variable of defaults/main.yml is an option of at least one entry point, and every entry
point that lists it gives it the same `default`; an option with a `default` has it in
defaults/main.yml. Roles keep no pasted copies of the shared memops_service steps, and no
task runs Python code inline (`python -c`): playbooks call `python -m memops` subcommands.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

ROLES_DIR = Path(__file__).resolve().parents[1] / "roles"
ROLES = sorted(path.name for path in ROLES_DIR.iterdir() if (path / "meta").is_dir())
TASK_FILES = sorted(ROLES_DIR.glob("*/tasks/*.yml")) + sorted(ROLES_DIR.glob("*/handlers/*.yml"))


def _load(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8")) if path.is_file() else None


def _entry_points(role: str) -> dict[str, dict[str, Any]]:
    specs = _load(ROLES_DIR / role / "meta" / "argument_specs.yml") or {}
    return specs.get("argument_specs", {})


@pytest.mark.parametrize("role", ROLES)
def test_every_role_has_argument_specs(role: str) -> None:
    assert "main" in _entry_points(role), f"{role}: meta/argument_specs.yml has no main entry point"


@pytest.mark.parametrize("role", ROLES)
def test_argument_spec_defaults_equal_the_role_defaults(role: str) -> None:
    defaults = _load(ROLES_DIR / role / "defaults" / "main.yml") or {}
    listed: dict[str, list[str]] = {}
    problems = []
    for entry, spec in _entry_points(role).items():
        for name, option in (spec.get("options") or {}).items():
            listed.setdefault(name, []).append(entry)
            if option.get("required") and "default" in option:
                problems.append(f"{entry}.{name}: required and default exclude each other")
            if name in defaults:
                if "default" not in option:
                    problems.append(
                        f"{entry}.{name}: no default (defaults/main.yml: {defaults[name]!r})"
                    )
                elif option["default"] != defaults[name]:
                    problems.append(
                        f"{entry}.{name}: default {option['default']!r} != {defaults[name]!r}"
                    )
            elif "default" in option:
                problems.append(f"{entry}.{name}: has a default but is not in defaults/main.yml")
    problems += [
        f"{name}: in defaults/main.yml, in no entry point"
        for name in defaults
        if name not in listed
    ]
    assert problems == [], f"{role}: " + "; ".join(problems)


@pytest.mark.parametrize("path", TASK_FILES, ids=lambda path: str(path.relative_to(ROLES_DIR)))
def test_no_inline_python(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert "python -c" not in text
    assert not re.search(r"^\s*- -c$", text, re.MULTILINE) or path.name == "start_pidfile.yml", (
        "run python code through a `python -m memops` subcommand"
    )


# The steps memops_service offers as tasks_from entries (status, apply, probe) live there only.
PASTED = {
    "status command": re.compile(r"'--status', '--pidfile'|\[start-stop-daemon, --status"),
    "probe command": re.compile(r"^\s+- probe$", re.MULTILINE),
    "service manager detection": re.compile(r"ansible_service_mgr"),
}


@pytest.mark.parametrize("role", [role for role in ROLES if role != "memops_service"])
def test_roles_call_memops_service_instead_of_copies(role: str) -> None:
    found = [
        f"{path.relative_to(ROLES_DIR)}: {what}"
        for path in sorted((ROLES_DIR / role).glob("**/*.yml"))
        for what, pattern in PASTED.items()
        if pattern.search(path.read_text(encoding="utf-8"))
    ]
    assert found == []
