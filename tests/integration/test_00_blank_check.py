"""`invoke deploy --check` on a host where the stack was never installed.

Runs first, so on a fresh CI machine it also meets uninstalled packages.
The blank inventory's instance (memops-blank) is never deployed for real.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from integration_helpers import BLANK_INVENTORY, invoke, port_open

from memops import paths

pytestmark = pytest.mark.integration

BLANK_PATHS = (
    Path("/etc/redis/memops-blank.conf"),
    Path("/etc/postgresql/15/memops-blank"),
    Path("/etc/qdrant/memops-blank"),
    Path("/opt/qdrant/memops-blank"),
    Path("/etc/memops-monitoring/memops-blank"),
    Path("/var/lib/memops-monitoring/memops-blank"),
    Path("/var/lib/memops/textfile/memops-blank"),
)


def test_check_mode_on_a_blank_host_completes_and_changes_nothing() -> None:
    assert not any(path.exists() for path in BLANK_PATHS), "the blank instance must not exist"
    # A fresh state directory: the download cache does not exist yet (check mode once
    # failed writing the "cannot be downloaded" marker into it).
    shutil.rmtree(paths.STATE_ROOT / "blank" / "dist", ignore_errors=True)

    run = invoke("deploy", "--inventory", BLANK_INVENTORY, "--check", "--json")

    assert run.returncode == 0, run.stderr
    document = run.json()
    assert document["ok"] is True and document["check"] is True
    assert document["changed"] > 0, "check mode should report what a real run would change"
    assert not any(path.exists() for path in BLANK_PATHS)
    for port in (27379, 27432, 27333, 27090, 27093, 27100, 27121, 27187):
        assert not port_open("127.0.0.1", port), f"check mode started something on {port}"
