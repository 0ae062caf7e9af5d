"""Fixtures shared by every test suite."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

VENV_BIN = Path(sys.executable).parent


def checker_tool(name: str) -> str:
    """promtool or amtool: ./bootstrap.sh unpacks them into .venv/bin from Debian's packages."""
    found = shutil.which(name) or shutil.which(name, path=str(VENV_BIN))
    if found is None:
        pytest.fail(f"{name} not found: run ./bootstrap.sh (it unpacks it into .venv/bin)")
    return found


@pytest.fixture(scope="session")
def promtool() -> str:
    return checker_tool("promtool")


@pytest.fixture(scope="session")
def amtool() -> str:
    return checker_tool("amtool")
