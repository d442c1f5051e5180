"""Networking for local nodes: one network namespace and veth pair per node.

Node N gets namespace ``silver-nN`` with ``host0`` = 10.213.N.2 and the host
side ``silver-hN`` = 10.213.N.1. N is host-global (several state dirs and test
runs share the machine): it is allocated under the host lock, recorded in a
claim file naming the owning node dir, and skipped while its namespace or link
exists. No NAT, no forwarding, no firewall change: a node can only talk to its
own host address.

The nodes' private network (the local kind of a cloud's private network, for
node-to-node traffic such as a balancer's): each node also has ``lan0`` =
10.213.0.N/24, a second veth whose host side ``silver-lN`` is a port of the
bridge ``silver-br0``. The bridge switches frames between nodes at layer 2 and
has no address (IPv4 or IPv6 link-local): the host is not on that network, so
it routes nothing and no node reaches the host or the outside through it. Node
numbers start at 1, so 10.213.0.0/24 never clashes with a node's own /24.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from silverlining.errors import SilverError
from silverlining.providers.local_host import NETNS_DIR, RUN_DIR, run

MAX_NODES = 250
CLAIMS = RUN_DIR / "claims"
BRIDGE = "silver-br0"
LAN_IF = "lan0"         # the node's side of its private-network veth


def netns_name(number: int) -> str:
    return f"silver-n{number}"


def link_name(number: int) -> str:
    return f"silver-h{number}"


def lan_link_name(number: int) -> str:
    return f"silver-l{number}"


def private_addr(number: int) -> str:
    """Node ``number``'s address on the nodes' private network (numbers are 1..MAX_NODES)."""
    if not 1 <= number <= MAX_NODES:
        raise ValueError(f"local node number out of range: {number}")
    return f"10.213.0.{number}"


def host_addr(number: int) -> str:
    return f"10.213.{number}.1"


def node_addr(number: int) -> str:
    return f"10.213.{number}.2"


def netns_path(number: int) -> Path:
    return NETNS_DIR / netns_name(number)


def link_exists(name: str) -> bool:
    return Path("/sys/class/net", name).exists()


def claim_owner(number: int) -> Path | None:
    try:
        return Path((CLAIMS / str(number)).read_text().strip())
    except FileNotFoundError:
        return None


def allocate(owner: Path, is_live_claim) -> int:
    """Claim the lowest free node number for the node in ``owner``. Call under the host lock.

    ``is_live_claim(owner_dir, number)`` tells whether an existing claim still
    belongs to a node (claims of deleted nodes are reused).
    """
    CLAIMS.mkdir(parents=True, exist_ok=True)
    taken = _subnets_in_use()
    for number in range(1, MAX_NODES + 1):
        current = claim_owner(number)
        if current == owner:
            return number
        if current is not None and is_live_claim(current, number):
            continue
        if (netns_path(number).exists() or link_exists(link_name(number))
                or link_exists(lan_link_name(number)) or number in taken):
            continue
        (CLAIMS / str(number)).write_text(f"{owner}\n")
        return number
    raise SilverError(f"no free local node number (all {MAX_NODES} in use): "
                      "destroy some local nodes")


def _subnets_in_use() -> set[int]:
    """N of every 10.213.N.x address on a host link (others' test networks included)."""
    out = run(["ip", "-4", "-o", "addr", "show"]).stdout
    return {int(m) for m in re.findall(r"\binet 10\.213\.(\d+)\.\d+/", out)}


def release(number: int, owner: Path) -> None:
    """Drop the claim on ``number`` if ``owner`` holds it. Call under the host lock."""
    if claim_owner(number) == owner:
        (CLAIMS / str(number)).unlink(missing_ok=True)


def setup(number: int) -> None:
    """Create (or complete) the namespace and veth pair of node ``number``; idempotent."""
    ns, link = netns_name(number), link_name(number)
    if not netns_path(number).exists():
        run(["ip", "netns", "add", ns])
    if not link_exists(link):
        run(["ip", "link", "add", link, "type", "veth", "peer", "name", "host0",
             "netns", ns])
    run(["ip", "addr", "replace", f"{host_addr(number)}/24", "dev", link])
    run(["ip", "link", "set", link, "up"])
    run(["ip", "-n", ns, "addr", "replace", f"{node_addr(number)}/24", "dev", "host0"])
    run(["ip", "-n", ns, "link", "set", "host0", "up"])
    run(["ip", "-n", ns, "link", "set", "lo", "up"])
    run(["ip", "-n", ns, "route", "replace", "default", "via", host_addr(number)])
    _setup_lan(number)


def ensure_bridge() -> None:
    """Create the nodes' bridge once (host-global, harmless when left): no address, not
    even IPv6 link-local, so the host stays off the nodes' private network."""
    if not link_exists(BRIDGE):
        run(["ip", "link", "add", BRIDGE, "type", "bridge", "stp_state", "0",
             "forward_delay", "0"])
    run(["ip", "link", "set", BRIDGE, "addrgenmode", "none"])
    run(["ip", "link", "set", BRIDGE, "up"])


def _setup_lan(number: int) -> None:
    """Node ``number``'s veth on the private network: ``lan0`` inside, a bridge port outside."""
    ensure_bridge()
    ns, link = netns_name(number), lan_link_name(number)
    if not link_exists(link):
        run(["ip", "link", "add", link, "type", "veth", "peer", "name", LAN_IF,
             "netns", ns])
    run(["ip", "link", "set", link, "addrgenmode", "none", "master", BRIDGE])
    run(["ip", "link", "set", link, "up"])
    run(["ip", "-n", ns, "link", "set", LAN_IF, "addrgenmode", "none"])
    run(["ip", "-n", ns, "addr", "replace", f"{private_addr(number)}/24", "dev", LAN_IF])
    run(["ip", "-n", ns, "link", "set", LAN_IF, "up"])


def netns_pids(number: int) -> list[int]:
    """Processes inside node ``number``'s namespace: a container whose nspawn was killed
    keeps running there (its init is not taken down with nspawn)."""
    try:
        inode = os.stat(netns_path(number)).st_ino
    except FileNotFoundError:
        return []
    target, pids = f"net:[{inode}]", []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                if os.readlink(f"/proc/{entry.name}/ns/net") == target:
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def teardown(number: int) -> None:
    """Delete the links and namespace of node ``number``, whatever of them is left (the
    bridge stays: other nodes use it)."""
    for link in (link_name(number), lan_link_name(number)):
        if link_exists(link):
            run(["ip", "link", "delete", link], check=False)
    if netns_path(number).exists():
        run(["ip", "netns", "delete", netns_name(number)])
