"""The replicated Redis tier's one rule for "follows its primary" (pure: INFO fields)."""

from __future__ import annotations

from memops.ha.redis_topology import follows

PRIMARY = ("198.18.48.11", 16379)
LINKED = {"role": "slave", "master_host": "198.18.48.11", "master_port": 16379}


def test_a_replica_follows_its_primary_only_with_the_link_up():
    assert follows({**LINKED, "master_link_status": "up"}, PRIMARY)
    assert not follows({**LINKED, "master_link_status": "down"}, PRIMARY)


def test_a_primary_or_a_replica_of_another_node_does_not_follow():
    assert not follows({"role": "master", "master_link_status": "up"}, PRIMARY)
    other = {**LINKED, "master_host": "198.18.48.12", "master_link_status": "up"}
    assert not follows(other, PRIMARY)
