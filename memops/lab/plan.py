"""What a lab is made of, decided before anything starts: hosts, addresses, groups.

Pure: ``lab.up`` asks the engine for exactly this, and the inventory it writes is
derived from it, so the two cannot disagree.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from memops.errors import BadInput

# Tier groups of the staging inventory, in the order hosts take them.
TIER_GROUPS = ("redis", "postgresql", "qdrant", "monitoring")
# The replicated shape adds the HA engines' own groups: Sentinels beside the Redis nodes,
# etcd members beside the PostgreSQL (Patroni) members.
HA_GROUPS = ("sentinel", "etcd")
ALL_GROUPS = (*TIER_GROUPS, *HA_GROUPS)
# Shapes: "staging" gives each tier a host; "replicated" puts a Redis node, a Sentinel, a
# PostgreSQL member and an etcd member on each of three hosts, Qdrant and the monitoring on a
# fourth.
SHAPES = ("staging", "replicated")
REPLICAS = 3  # nodes of each replicated tier: a primary and two replicas, quorum 2 of 3
# Documentation and benchmarking space (RFC 2544): never a network someone runs.
ALLOWED_SPACE = ipaddress.IPv4Network("198.18.0.0/15")
DEFAULT_SUBNET = "198.18.42.0/24"
MAX_HOSTS = 9
FIRST_HOST_OFFSET = 11  # host n gets the subnet's address .(10 + n); .1 is the machine's
PROXY_PORT = 8888
WEBHOOK_PORT = 19500  # where the lab's Alertmanager sends (a listener on the machine, if any)


class LabPlanError(BadInput):
    """A lab that cannot be made as asked."""


@dataclass(frozen=True)
class LabHost:
    name: str  # container name, host name and inventory name
    address: str
    groups: tuple[str, ...]


@dataclass(frozen=True)
class LabPlan:
    name: str
    subnet: str
    gateway: str  # the machine's address on the lab network: proxy, webhook, controller
    hosts: tuple[LabHost, ...]
    systemd: bool  # hosts run systemd as PID 1; False: sshd under tini (the pidfile path)
    shape: str = "staging"

    @property
    def proxy_url(self) -> str:
        return f"http://{self.gateway}:{PROXY_PORT}"

    def hosts_in(self, group: str) -> list[LabHost]:
        return [host for host in self.hosts if group in host.groups]


def groups_for(count: int) -> list[tuple[str, ...]]:
    """The tier groups of each of ``count`` hosts: one tier per host while there are enough
    hosts; fewer hosts share them in turn; hosts past the fourth are spares."""
    assigned: list[list[str]] = [[] for _ in range(count)]
    for index, group in enumerate(TIER_GROUPS):
        assigned[index % count].append(group)
    return [tuple(groups) for groups in assigned]


def replicated_groups_for(count: int) -> list[tuple[str, ...]]:
    """The replicated shape: three hosts of Redis + Sentinel + PostgreSQL + etcd, one of
    Qdrant and the monitoring; hosts past the fourth are spares."""
    ha_host = ("redis", "sentinel", "postgresql", "etcd")
    shared = [ha_host] * REPLICAS + [("qdrant", "monitoring")]
    return shared + [()] * (count - len(shared))


def make_plan(
    *, name: str, hosts: int, subnet: str, systemd: bool = True, shape: str = "staging"
) -> LabPlan:
    """Check the request and lay the hosts out on ``subnet``."""
    if shape not in SHAPES:
        raise LabPlanError(f"--shape: one of {', '.join(SHAPES)}, not {shape!r}")
    if shape == "replicated" and hosts < REPLICAS + 1:
        raise LabPlanError(f"--shape replicated: needs at least {REPLICAS + 1} hosts, not {hosts}")
    if not name or not all(char.isalnum() or char == "-" for char in name) or len(name) > 30:
        raise LabPlanError(f"lab name {name!r}: letters, digits and '-' only, at most 30")
    if not 1 <= hosts <= MAX_HOSTS:
        raise LabPlanError(f"--hosts: from 1 to {MAX_HOSTS}, not {hosts}")
    try:
        network = ipaddress.ip_network(subnet)
    except ValueError:
        raise LabPlanError(f"--subnet: not a network: {subnet!r}") from None
    if not (isinstance(network, ipaddress.IPv4Network) and network.subnet_of(ALLOWED_SPACE)):
        raise LabPlanError(
            f"--subnet: {subnet} is outside {ALLOWED_SPACE} (the benchmarking range, never "
            "a network in use)"
        )
    if network.num_addresses < FIRST_HOST_OFFSET + hosts + 1:
        raise LabPlanError(f"--subnet: {subnet} is too small for {hosts} hosts")
    gateway = str(network.network_address + 1)
    layout = replicated_groups_for(hosts) if shape == "replicated" else groups_for(hosts)
    lab_hosts = tuple(
        LabHost(
            name=f"{name}-{index + 1}",
            address=str(network.network_address + FIRST_HOST_OFFSET + index),
            groups=groups,
        )
        for index, groups in enumerate(layout)
    )
    return LabPlan(
        name=name,
        subnet=str(network),
        gateway=gateway,
        hosts=lab_hosts,
        systemd=systemd,
        shape=shape,
    )


def inventory_hosts(plan: LabPlan, *, key_file: str, known_hosts: str) -> dict[str, Any]:
    """hosts.yml of the lab: the staging inventory's groups, reached over SSH as root."""
    children: dict[str, Any] = {
        group: {"hosts": {host.name: None for host in plan.hosts_in(group)}}
        for group in ALL_GROUPS
        if group in TIER_GROUPS or plan.hosts_in(group)
    }
    spares = [host for host in plan.hosts if not host.groups]
    if spares:
        children["spare"] = {"hosts": {host.name: None for host in spares}}
    return {
        "all": {
            "hosts": {host.name: {"ansible_host": host.address} for host in plan.hosts},
            "children": children,
            "vars": {
                "ansible_user": "root",
                "ansible_ssh_private_key_file": key_file,
                "ansible_ssh_common_args": (
                    f"-o UserKnownHostsFile={known_hosts} -o IdentitiesOnly=yes"
                ),
                "ansible_python_interpreter": "/usr/bin/python3",
            },
        }
    }


def inventory_vars(plan: LabPlan) -> dict[str, Any]:
    """group_vars/all of the lab: the staging settings, with the lab's own secrets (generated
    in the state directory, as for the local stack), addresses and network."""
    monitoring = [host.address for host in plan.hosts_in("monitoring")]
    # PostgreSQL admits the monitoring host (its exporter) and the machine (memops itself).
    admitted = sorted({f"{address}/32" for address in [*monitoring, plan.gateway]})
    host_address = "{{ ansible_default_ipv4.address }}"
    settings = {
        "memops_environment": "lab",
        "redis_bind": host_address,
        "redis_app_user": "memory-service",
        "postgresql_listen_addresses": host_address,
        "postgresql_allowed_networks": admitted,
        # memops (backups, restores) runs on the machine: it administers the cluster from there.
        "postgresql_admin_networks": [f"{plan.gateway}/32"],
        "qdrant_bind": host_address,
        "qdrant_app_collections": [
            "memory_chat",
            "memory_tool_call",
            "memory_document",
            "memory_observation",
            "memory_fact",
        ],
        # The lab has no route to GitHub's releases: the stand-in, said so in targets.json.
        "qdrant_allow_standin": True,
        "node_exporter_listen_host": host_address,
        "redis_exporter_listen_host": host_address,
        "postgres_exporter_listen_host": host_address,
        "prometheus_listen_host": host_address,
        "alertmanager_listen_host": host_address,
        "alertmanager_paging_webhook_url": f"http://{plan.gateway}:{WEBHOOK_PORT}/paging",
        "alertmanager_chat_webhook_url": f"http://{plan.gateway}:{WEBHOOK_PORT}/chat",
        "grafana_install": False,  # not installable from Debian's mirror
        "grafana_provision": True,
        # The schedule runs on the controller, this machine: a lab's backups are taken by hand.
        "memops_backup_schedule_enabled": False,
    }
    if plan.shape == "replicated":
        settings.update(replicated_vars(plan))
    return settings


def replicated_vars(plan: LabPlan) -> dict[str, Any]:
    """The HA engines' settings of the replicated lab: short detection windows, so a
    failover test takes seconds, and a write acknowledged by a replica before it counts."""
    return {
        "redis_sentinel_down_after_milliseconds": 5000,
        "redis_sentinel_failover_timeout": 20000,
        "redis_min_replicas_to_write": 1,
        # PostgreSQL under Patroni on the etcd of the same three hosts; a commit waits for the
        # synchronous standby, which is the one Patroni promotes.
        "postgresql_ha_engine": "patroni",
        "postgresql_patroni_synchronous_mode": True,
    }
