"""Helpers of the multihost tests: the test lab's names, addresses and commands.

The tests drive the lab and the stack on it with the commands users type
(`invoke lab.up`, `invoke deploy --inventory <the lab's>`), on a lab of their own
(name memops-test-lab, subnet 198.18.43.0/24, files in .state/test-lab) so a lab a
person runs on this machine (memops-lab, 198.18.42.0/24) is never touched. Images and
the unpacked tools are shared through the default cache, .state/lab-cache.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from integration.integration_helpers import Run, invoke

from memops.paths import STATE_ROOT

LAB_HOME = STATE_ROOT / "test-lab"
LAB_NAME = "memops-test-lab"
SUBNET = "198.18.43.0/24"
LAB_UP = ("lab.up", "--name", LAB_NAME, "--subnet", SUBNET, "--hosts", "4", "--json")


def lab_invoke(*args: str, timeout: float = 1800, home: Path = LAB_HOME) -> Run:
    """`invoke ARGS` with the lab whose files are in ``home``."""
    return invoke(*args, env={"MEMOPS_LAB_DIR": str(home)}, timeout=timeout)


@dataclass(frozen=True)
class Lab:
    """A lab that `invoke lab.up` made: its hosts by group, its inventory, its gateway."""

    name: str
    inventory: str
    gateway: str
    hosts: dict[str, dict[str, Any]]  # name -> {address, groups}
    state_dir: Path
    home: Path  # the lab's files (MEMOPS_LAB_DIR)

    def host_of(self, group: str) -> str:
        return next(name for name, host in self.hosts.items() if group in host["groups"])

    def address_of(self, group: str) -> str:
        return str(self.hosts[self.host_of(group)]["address"])

    def ssh(self, host: str, command: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run ``command`` on ``host`` over SSH, as Ansible reaches it."""
        return subprocess.run(
            [
                "ssh",
                "-i",
                str(self.home / "id_ed25519"),
                "-o",
                f"UserKnownHostsFile={self.home / 'known_hosts'}",
                "-o",
                "IdentitiesOnly=yes",
                "-o",
                "BatchMode=yes",
                f"root@{self.hosts[host]['address']}",
                command,
            ],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


def lab_from(document: dict[str, Any], home: Path = LAB_HOME) -> Lab:
    from memops.paths import state_dir_for

    hosts = {h["name"]: {"address": h["address"], "groups": h["groups"]} for h in document["hosts"]}
    first = next(iter(hosts.values()))["address"]
    gateway = first.rsplit(".", 1)[0] + ".1"
    return Lab(
        document["name"],
        document["inventory"],
        gateway,
        hosts,
        state_dir_for(document["name"]),
        home,
    )


@dataclass(frozen=True)
class LabStack:
    """The stack as `invoke deploy` first deployed it on the lab."""

    lab: Lab
    first_deploy: dict[str, Any]
    first_deploy_s: float


# The replicated lab (`lab.up --shape replicated`): its own name, subnet and files, so it
# can run beside the staging lab of the same session.
# MEMOPS_TEST_HA_LAB (name) and MEMOPS_TEST_HA_SUBNET move it where a machine shared with
# other checkouts has room (each checkout runs its own engine, but subnets must not overlap).
HA_LAB_HOME = STATE_ROOT / "test-ha-lab"
HA_LAB_NAME = os.environ.get("MEMOPS_TEST_HA_LAB", "memops-test-ha")
HA_SUBNET = os.environ.get("MEMOPS_TEST_HA_SUBNET", "198.18.48.0/24")
HA_LAB_UP = (
    "lab.up",
    "--name",
    HA_LAB_NAME,
    "--subnet",
    HA_SUBNET,
    "--hosts",
    "4",
    "--shape",
    "replicated",
    "--json",
)
