"""The nodes' private network on real local nodes: node to node over 10.213.0.N.

Two nodes for the module: ``lan-a-TAG`` (plain) and ``lan-b-TAG`` (set up, so it
runs nginx). A reaches B's sshd and nginx on B's private address; the host is
not on that network (no address, no forwarding, no route out through it); the
link comes back after a reboot and goes with the node.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

import pytest

from silverlining.nodes import NodeAddress
from silverlining.providers import local_net

pytestmark = pytest.mark.node

TAG = os.environ.get("SILVER_TEST_NODE_TAG", "")
IP_FORWARD = Path("/proc/sys/net/ipv4/ip_forward")


def lan_name(role: str) -> str:
    return f"lan-{role}" + (f"-{TAG}" if TAG else "")


@pytest.fixture(scope="module")
def forwarding_before() -> str:
    return IP_FORWARD.read_text()


@pytest.fixture(scope="module")
def node_a(forwarding_before, make_module_node) -> NodeAddress:
    return make_module_node(lan_name("a"))


@pytest.fixture(scope="module")
def node_b(forwarding_before, make_module_node) -> NodeAddress:
    return make_module_node(lan_name("b"), "--setup-node")


def on(node_env, name: str, command: str, check: bool = True):
    with node_env.ssh(name) as ssh:
        return ssh.run(["sh", "-c", command], check=check)


def tcp_banner(node_env, name: str, address: str, port: int) -> str:
    """What ``address:port`` says first, read from node ``name`` (empty: not reached)."""
    script = f"exec 3<>/dev/tcp/{address}/{port} && timeout 3 head -n 1 <&3"
    return on(node_env, name, f"timeout 5 bash -c {shlex.quote(script)}", check=False).stdout


def http_status(node_env, name: str, address: str) -> str:
    return on(node_env, name, f"curl -s -m 5 -o /dev/null -w '%{{http_code}}' "
                              f"http://{address}/", check=False).stdout.strip()


def on_host(argv: list[str]) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout.strip()


def private_of(node_env, name: str) -> str:
    return node_env.registry()[name]["private_address"]


def test_a_node_reaches_another_over_the_private_network(node_env, node_a, node_b):
    private_b = private_of(node_env, node_b.name)
    number_b = int(node_b.address.split(".")[2])
    assert private_b == local_net.private_addr(number_b)
    with node_env.environ():
        from silverlining.nodes import peer_address
        assert peer_address(node_b.name) == private_b
        assert peer_address(node_b.name, from_node=node_a.name) == private_b
    assert f"inet {private_b}/24" in on(node_env, node_b.name, "ip -4 -o addr show dev lan0"
                                        ).stdout
    assert tcp_banner(node_env, node_a.name, private_b, 22).startswith("SSH-2.0-")
    assert http_status(node_env, node_a.name, private_b) not in ("", "000")


def test_the_host_is_not_on_the_private_network(node_env, node_a, node_b,
                                                forwarding_before):
    assert IP_FORWARD.read_text() == forwarding_before
    bridge = on_host(["ip", "-o", "addr", "show", "dev", local_net.BRIDGE])
    assert bridge == ""                          # no IPv4, no IPv6 link-local: host not on it
    ports = on_host(["ip", "-o", "link", "show", "master", local_net.BRIDGE])
    for node in (node_a, node_b):
        number = int(node.address.split(".")[2])
        assert f" {local_net.lan_link_name(number)}@" in ports
    # nothing leaves a node through the private network: its only way out is its own host0
    route = on(node_env, node_a.name, "ip -4 route show dev lan0; echo; "
                                      "ip -6 addr show dev lan0").stdout
    assert route.split("\n\n")[0].split() == ["10.213.0.0/24", "proto", "kernel", "scope",
                                              "link", "src", private_of(node_env, node_a.name)]
    assert "inet6" not in route
    assert "dev host0" in on(node_env, node_a.name, "ip -4 route get 192.0.2.1").stdout
    # and the host routes nothing between nodes: B's own address is out of A's reach
    assert tcp_banner(node_env, node_a.name, node_b.address, 22) == ""


def test_the_private_link_survives_a_reboot(node_env, node_a, node_b):
    private_b = private_of(node_env, node_b.name)
    node_env.reboot(node_b.name)
    # any command starts the node again if needed and waits for its SSH
    node_env.silver("query", node_b.name, check=True)
    assert private_of(node_env, node_b.name) == private_b
    assert tcp_banner(node_env, node_a.name, private_b, 22).startswith("SSH-2.0-")
    assert http_status(node_env, node_a.name, private_b) not in ("", "000")


def test_destroy_removes_the_private_link(node_env, node_a, make_node):
    node_c = make_node(lan_name("c"))
    private_c = private_of(node_env, node_c.name)
    link = local_net.lan_link_name(int(node_c.address.split(".")[2]))
    assert Path("/sys/class/net", link).exists()
    assert tcp_banner(node_env, node_a.name, private_c, 22).startswith("SSH-2.0-")
    node_env.destroy(node_c.name).check_returncode()
    assert not Path("/sys/class/net", link).exists()
    assert tcp_banner(node_env, node_a.name, private_c, 22) == ""


def test_several_nodes_refuse_node_disk_services(node_env, node_a, node_b, tmp_path):
    app = tmp_path / "shop"
    app.mkdir()
    (app / "main.py").write_text("")
    (app / "app.ini").write_text("[production]\napp_name = shop\nrunner = main.py\n"
                                 "service.files =\nservice.postgresql =\n")
    proc = node_env.silver("-y", "update", str(app), "lanshop.test", "--node", node_a.name,
                           "--node", node_b.name, "--noetchosts")
    assert proc.returncode == 2, proc.stderr
    expected = (f"silver: error: service.files in {app / 'app.ini'} "
                f"cannot be used on several nodes ({node_a.name}, {node_b.name}): each "
                "node would keep its own files and the copies would diverge; "
                "deploy to one node, or keep the data outside the nodes (a services node, "
                "--services-node NAME, for PostgreSQL, MariaDB and Redis; object storage "
                "the app reaches through its own settings for files)")
    assert proc.stderr.strip().splitlines() == [expected]
    assert "shop" not in node_env.silver("query", node_b.name, check=True).stdout
