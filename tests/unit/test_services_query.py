"""What ``silver query`` says of a services node and of a balancer whose location has one."""

from __future__ import annotations

from silverlining.commands.query import format_balancer, format_services_node


def test_a_services_node_lists_whom_it_serves_and_its_replicas_lag():
    hosted = {"shop": {"location": "shop.test", "members": ["web1", "web2"], "fenced": False},
              "old": {"location": "old.test", "members": ["web3"], "fenced": True}}
    replication = {"role": "primary", "replicas": [
        {"name": "db2", "state": "streaming", "lag_bytes": 120, "lag_seconds": 0.004},
        {"name": "db3", "state": "not connected"}]}
    assert format_services_node(hosted, replication) == [
        "databases of old for old.test: fenced (its replica took over)",
        "databases of shop for shop.test: web1, web2",
        "replica db2: streaming, 120 bytes and 4 ms behind",
        "replica db3: not connected"]


def test_a_replica_says_its_primary_and_a_promoted_node_its_former_one():
    assert format_services_node({}, {"role": "replica", "primary": "db1", "state": "streaming",
                                     "lag_bytes": 0}) == \
        ["replica of db1: streaming, 0 bytes received but not yet replayed"]
    assert format_services_node({}, {"role": "primary", "primary": "db1", "replicas": []}) == \
        ["primary, promoted from db1"]


def test_a_balanced_location_names_its_services_node():
    sites = {"shop.test": {"app": "shop", "batch": "1", "services": "db1", "members": []}}
    assert format_balancer(sites, {}) == ["shop.test  (balanced: shop, batch 1, databases on db1)"]
