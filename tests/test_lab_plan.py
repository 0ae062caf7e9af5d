"""The lab's plan: hosts, addresses and groups, decided before anything starts (pure)."""

from __future__ import annotations

import pytest

from memops.errors import BadInput
from memops.lab.plan import inventory_hosts, inventory_vars, make_plan


def test_four_hosts_give_each_tier_and_the_monitoring_its_own():
    plan = make_plan(name="memops-lab", hosts=4, subnet="198.18.42.0/24")
    assert [(h.name, h.address, h.groups) for h in plan.hosts] == [
        ("memops-lab-1", "198.18.42.11", ("redis",)),
        ("memops-lab-2", "198.18.42.12", ("postgresql",)),
        ("memops-lab-3", "198.18.42.13", ("qdrant",)),
        ("memops-lab-4", "198.18.42.14", ("monitoring",)),
    ]
    assert plan.gateway == "198.18.42.1"
    assert plan.proxy_url == "http://198.18.42.1:8888"


def test_one_host_carries_every_group_and_extra_hosts_are_spares():
    (only,) = make_plan(name="lab", hosts=1, subnet="198.18.42.0/24").hosts
    assert only.groups == ("redis", "postgresql", "qdrant", "monitoring")
    six = make_plan(name="lab", hosts=6, subnet="198.18.42.0/24")
    assert [h.groups for h in six.hosts[4:]] == [(), ()]
    hosts = inventory_hosts(six, key_file="/k", known_hosts="/kh")
    assert set(hosts["all"]["children"]["spare"]["hosts"]) == {"lab-5", "lab-6"}


@pytest.mark.parametrize(
    ("name", "hosts", "subnet", "message"),
    [
        ("lab", 0, "198.18.42.0/24", "--hosts: from 1 to 9"),
        ("lab", 10, "198.18.42.0/24", "--hosts: from 1 to 9"),
        ("lab", 4, "10.0.0.0/24", "outside 198.18.0.0/15"),
        ("lab", 4, "192.168.1.0/24", "outside 198.18.0.0/15"),
        ("lab", 4, "nonsense", "not a network"),
        ("lab", 4, "198.18.42.0/29", "too small"),
        ("la b", 4, "198.18.42.0/24", "letters, digits"),
    ],
)
def test_a_lab_that_cannot_be_made_is_refused_in_one_line(name, hosts, subnet, message):
    with pytest.raises(BadInput, match=message):
        make_plan(name=name, hosts=hosts, subnet=subnet)


def test_the_inventory_reaches_hosts_over_ssh_and_admits_only_the_lab_addresses():
    plan = make_plan(name="memops-lab", hosts=4, subnet="198.18.42.0/24")
    hosts = inventory_hosts(plan, key_file="/lab/id", known_hosts="/lab/known_hosts")
    assert hosts["all"]["hosts"]["memops-lab-2"] == {"ansible_host": "198.18.42.12"}
    assert set(hosts["all"]["children"]["postgresql"]["hosts"]) == {"memops-lab-2"}
    assert "ansible_connection" not in hosts["all"]["vars"]  # SSH, as for real hosts
    assert "UserKnownHostsFile=/lab/known_hosts" in hosts["all"]["vars"]["ansible_ssh_common_args"]
    settings = inventory_vars(plan)
    # the monitoring host (exporter) and the machine (memops), nothing wider
    assert settings["postgresql_allowed_networks"] == ["198.18.42.1/32", "198.18.42.14/32"]


def test_the_replicated_shape_puts_each_ha_engine_on_three_hosts():
    plan = make_plan(name="ha", hosts=4, subnet="198.18.48.0/24", shape="replicated")
    ha_host = ("redis", "sentinel", "postgresql", "etcd")
    assert [h.groups for h in plan.hosts] == [ha_host, ha_host, ha_host, ("qdrant", "monitoring")]
    children = inventory_hosts(plan, key_file="/k", known_hosts="/kh")["all"]["children"]
    assert set(children["sentinel"]["hosts"]) == {"ha-1", "ha-2", "ha-3"}
    assert set(children["etcd"]["hosts"]) == {"ha-1", "ha-2", "ha-3"}
    assert inventory_vars(plan)["redis_min_replicas_to_write"] == 1
    staging = make_plan(name="lab", hosts=4, subnet="198.18.42.0/24")
    assert (
        "sentinel"
        not in inventory_hosts(staging, key_file="/k", known_hosts="/kh")["all"]["children"]
    )
    assert "redis_min_replicas_to_write" not in inventory_vars(staging)


def test_the_replicated_shape_runs_postgresql_under_patroni_with_synchronous_mode():
    plan = make_plan(name="ha", hosts=4, subnet="198.18.48.0/24", shape="replicated")
    assert inventory_vars(plan)["postgresql_ha_engine"] == "patroni"
    assert inventory_vars(plan)["postgresql_patroni_synchronous_mode"] is True
    staging = make_plan(name="lab", hosts=4, subnet="198.18.42.0/24")
    assert "postgresql_ha_engine" not in inventory_vars(staging)  # the role's default: none


@pytest.mark.parametrize(
    ("hosts", "shape", "message"),
    [(3, "replicated", "needs at least 4 hosts"), (4, "ring", "--shape: one of")],
)
def test_a_shape_that_cannot_be_made_is_refused(hosts, shape, message):
    with pytest.raises(BadInput, match=message):
        make_plan(name="ha", hosts=hosts, subnet="198.18.48.0/24", shape=shape)
