"""The same stack on a lab host without systemd: every service a pidfile daemon.

Containers, minimal images and some CI machines run no systemd as PID 1; the roles
then start each daemon with start-stop-daemon and a pidfile in /run. One host
carries every group (`invoke lab.up --hosts 1 --without-systemd`), deployed over
SSH like the four-host lab, with its own lab files so both labs can be up at once.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from lab_helpers import Lab, lab_from, lab_invoke

from memops.paths import STATE_ROOT

pytestmark = pytest.mark.multihost

HOME = STATE_ROOT / "test-lab-plain"
PIDFILES = (
    "/run/redis-memops.pid",
    "/run/qdrant-memops.pid",
    "/run/memops-prometheus-memops.pid",
    "/run/memops-alertmanager-memops.pid",
    "/run/memops-node-exporter-memops.pid",
)


@pytest.fixture(scope="module")
def plain_lab() -> Iterator[Lab]:
    up = lab_invoke(
        "lab.up", "--name", "memops-test-plain", "--subnet", "198.18.45.0/24",
        "--hosts", "1", "--without-systemd", "--json", home=HOME,
    )  # fmt: skip
    try:
        assert up.returncode == 0, f"lab.up failed: {up.stderr.strip()}"
        yield lab_from(up.json(), HOME)
    finally:
        down = lab_invoke("lab.down", "--json", home=HOME)
        assert down.returncode == 0, down.stderr


def test_a_host_without_systemd_deploys_runs_pidfile_daemons_and_comes_off(plain_lab: Lab) -> None:
    (host,) = plain_lab.hosts
    assert plain_lab.ssh(host, "cat /proc/1/comm").stdout.strip() != "systemd"
    first = lab_invoke("deploy", "--inventory", plain_lab.inventory, "--json", home=HOME)
    assert first.returncode == 0, first.stderr
    again = lab_invoke("deploy", "--inventory", plain_lab.inventory, "--json", home=HOME)
    assert again.returncode == 0, again.stderr
    assert again.json()["changed"] == 0
    health = lab_invoke("health", "--inventory", plain_lab.inventory, "--json", home=HOME)
    assert health.returncode == 0, health.stdout
    for pidfile in PIDFILES:
        alive = plain_lab.ssh(host, f"start-stop-daemon --status --pidfile {pidfile}")
        assert alive.returncode == 0, pidfile
    assert plain_lab.ssh(host, "pg_lsclusters -h | grep -q '15 *memops .*online'").returncode == 0

    backup = lab_invoke("backup.create", "--inventory", plain_lab.inventory, "--json", home=HOME)
    assert backup.returncode == 0, backup.stderr
    drill = lab_invoke("backup.drill", "--inventory", plain_lab.inventory, "--json", home=HOME)
    assert drill.returncode == 0, drill.stderr

    removed = lab_invoke("remove", "--inventory", plain_lab.inventory, "--yes", "--json", home=HOME)
    assert removed.returncode == 0, removed.stderr
    for pidfile in PIDFILES:
        gone = plain_lab.ssh(host, f"start-stop-daemon --status --pidfile {pidfile}")
        assert gone.returncode != 0, pidfile
    listening = plain_lab.ssh(host, "ss -ltnH | awk '{print $4}'").stdout.split()
    assert [a for a in listening if not a.endswith(":22") and "127.0.0.11" not in a] == []
