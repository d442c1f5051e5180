"""The nodes' private network without nodes: addressing and which address a peer uses."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st
from libcloud.compute.base import Node
from libcloud.compute.types import NodeState

from silverlining import nodes
from silverlining.providers import local_net, node_address, private_address
from silverlining.state import NodeRegistry

LAN = ipaddress.ip_network("10.213.0.0/24")


@given(st.integers(min_value=1, max_value=local_net.MAX_NODES))
def test_private_address_is_a_host_of_the_reserved_subnet(number):
    private = ipaddress.ip_address(local_net.private_addr(number))
    assert private in LAN
    assert private not in (LAN.network_address, LAN.broadcast_address)


def test_no_node_subnet_is_the_private_network():
    for number in range(1, local_net.MAX_NODES + 1):
        assert ipaddress.ip_address(local_net.node_addr(number)) not in LAN
        assert ipaddress.ip_address(local_net.host_addr(number)) not in LAN


@pytest.mark.parametrize("number", [0, -1, local_net.MAX_NODES + 1, 255])
def test_private_address_refuses_numbers_outside_the_node_range(number):
    with pytest.raises(ValueError):
        local_net.private_addr(number)


def test_link_names_fit_the_kernels_limit():
    for number in (1, local_net.MAX_NODES):
        for name in (local_net.link_name(number), local_net.lan_link_name(number),
                     local_net.BRIDGE, local_net.LAN_IF):
            assert len(name) <= 15


def _node(public: list[str], private: list[str]) -> Node:
    return Node("id", "n", NodeState.RUNNING, public, private, driver=None)


def test_private_address_is_the_first_real_private_ipv4():
    assert private_address(_node(["1.2.3.4"], ["fd00::1", "0.0.0.0", "10.1.2.3",
                                               "10.9.9.9"])) == "10.1.2.3"
    assert private_address(_node(["1.2.3.4"], [])) is None
    # silver itself still connects on the public address
    assert node_address(_node(["10.213.4.2"], ["10.213.0.4"])) == "10.213.4.2"


@pytest.fixture
def registry(tmp_path, monkeypatch) -> NodeRegistry:
    monkeypatch.setenv("SILVER_HOME", str(tmp_path))
    reg = NodeRegistry()
    reg.put("lb", address="10.213.1.2", private_address="10.213.0.1", driver="local",
            provider="local")
    reg.put("web", address="10.213.2.2", private_address="10.213.0.2", driver="local",
            provider="local2")
    reg.put("old", address="10.213.3.2", driver="local", provider="local")
    reg.put("cloud1", address="203.0.113.1", private_address="10.0.0.1", driver="ec2",
            provider="aws")
    reg.put("cloud2", address="203.0.113.2", private_address="10.0.0.2", driver="ec2",
            provider="aws")
    reg.put("other", address="198.51.100.7", private_address="10.0.0.9",
            driver="digitalocean", provider="do")
    return reg


def test_peer_address_prefers_the_private_network(registry):
    assert nodes.peer_address("web") == "10.213.0.2"
    assert nodes.peer_address("10.213.2.2") == "10.213.0.2"   # named by its address
    assert nodes.peer_address("old") == "10.213.3.2"          # no private address recorded
    assert nodes.peer_address("203.0.113.99") == "203.0.113.99"


def test_peer_address_from_a_node_on_another_network_is_public(registry):
    assert nodes.peer_address("web", from_node="lb") == "10.213.0.2"   # one host bridge
    assert nodes.peer_address("cloud2", from_node="cloud1") == "10.0.0.2"
    assert nodes.peer_address("cloud2", from_node="other") == "203.0.113.2"
    assert nodes.peer_address("cloud2", from_node="lb") == "203.0.113.2"
    assert nodes.peer_address("web", from_node="old") == "10.213.2.2"
    assert nodes.peer_address("web", from_node="192.0.2.1") == "10.213.2.2"
