"""Which address a node name stands for, and making sure a local node is up.

Nodes made by ``silver create-node`` are in the registry (``nodes.json``);
any other name must resolve through DNS or /etc/hosts. Stdlib only at import
time: the provider machinery loads only when a local node must be started.
"""

from __future__ import annotations

import ipaddress
import json
import re
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from silverlining.errors import SilverError, UsageError
from silverlining.inifile import suggest
from silverlining.state import NodeRegistry

if TYPE_CHECKING:
    from silverlining.userconfig import DnsConfig

_NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9.-]*[a-z0-9])?\Z")


@dataclass(frozen=True)
class NodeAddress:
    name: str       # what the user called it (labels progress lines)
    address: str    # what we connect to


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def resolve(name_or_address: str, start: bool = True) -> NodeAddress:
    """Registry first, else an IP address as given, else DNS.

    A registered local node is started if it is not running (``start``), so
    every command can use it right after the host rebooted.
    """
    text = name_or_address.strip().lower()
    registry = NodeRegistry()
    entry = registry.get(text)
    if entry is None:
        for name, info in registry.all().items():
            if info.get("address") == text:
                text, entry = name, info
                break
    if entry is not None:
        if start:
            ensure_running(text)
            entry = registry.get(text) or entry
        if not entry.get("address"):
            raise SilverError(f"node {text!r} has no address yet; run "
                              f"'silver create-node {text} --if-not-exists --wait'")
        return NodeAddress(text, entry["address"])
    if _is_ip(text):
        return NodeAddress(text, text)
    if not _NAME_RE.match(text):
        raise UsageError(f"bad node name {name_or_address!r}: use lowercase letters, "
                         "digits, '.' and '-'")
    try:
        infos = socket.getaddrinfo(text, 22, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise SilverError(f"unknown node {text!r}: not created with 'silver create-node' "
                          f"and its name does not resolve{suggest(text, list(registry.all()))}"
                          ) from None
    return NodeAddress(text, str(infos[0][4][0]))


def peer_address(name_or_address: str, from_node: str | None = None) -> str:
    """The address other nodes should use to reach a node (a balancer its members).

    Its private address (``private_address`` in the registry: the provider's private
    network, or the local nodes' bridge) when it has one, else the address silver
    reaches it on. Node-to-node traffic belongs on the private network: a cloud does
    not expose or meter it, and local nodes have no other path to each other. With
    ``from_node``, the private address is used only if that node is on the same
    private network (both local, or both made with the same provider); a node silver
    did not create has no known private network, so it gets the public address.
    """
    target = resolve(name_or_address, start=False)
    registry = NodeRegistry()
    entry = registry.get(target.name) or {}
    private = entry.get("private_address")
    if not private:
        return target.address
    if from_node is None:
        return private
    source = registry.get(resolve(from_node, start=False).name) or {}
    return private if same_private_network(entry, source) else target.address


def same_private_network(a: dict, b: dict) -> bool:
    """Whether two registry entries' private addresses reach each other: local nodes
    share the host's one bridge; cloud nodes share their provider's network."""
    if not (a.get("private_address") and b.get("private_address")):
        return False
    if a.get("driver") == "local" and b.get("driver") == "local":
        return True
    return a.get("provider") is not None and a.get("provider") == b.get("provider")


def ensure_running(name: str, timeout: float = 120) -> None:
    """Start a registered local node if it is stopped, and wait for its SSH.

    Local nodes do not survive a host reboot (or a reboot from inside); cloud
    nodes are the provider's business, so this is a no-op for them.
    """
    entry = NodeRegistry().get(name)
    if not entry or entry.get("driver") != "local":
        return
    from silverlining import state, transport
    from silverlining.userconfig import UserConfig

    cfg = UserConfig.load().provider(entry.get("provider"))
    local_dir = cfg.driver_args.get("state_dir")
    nodes_dir = Path(local_dir).expanduser() if local_dir else state.state_dir() / "local"
    deadline = time.monotonic() + timeout
    address = entry.get("address")
    if address and local_node_is_up(nodes_dir / "nodes" / name):
        # the usual case, without loading libcloud (a third of a command's time); a
        # node going down (a reboot from inside) fails this and is started below
        try:
            transport.wait_for_ssh(address, 10.0, label=name)
            return
        except SilverError:
            pass
    from silverlining.providers import call_provider, get_driver

    driver = get_driver(cfg)
    check = getattr(driver, "ex_ensure_running", None)
    if check is None:
        return
    while True:
        # Check again on each round: a node that was shutting down (a reboot from
        # inside) when we first looked has to be started once it is down.
        node = call_provider(f"starting node {name}", check, name)
        address = _follow_address(name, entry, node)
        if not address:
            return
        try:
            transport.wait_for_ssh(address, min(10.0, max(1.0, deadline - time.monotonic())),
                                   label=name)
            return
        except SilverError:
            if time.monotonic() > deadline:
                raise


def pid_alive(pid: int | None, *needles: str) -> bool:
    """Whether ``pid`` runs (not a zombie) and its command line contains every needle.

    The needles guard against a recycled pid: a pid file may outlive its process.
    """
    if not pid or pid <= 0:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(
            errors="replace")
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return False
    state = stat.rpartition(")")[2].split()[0]
    if state in ("Z", "X"):
        return False
    return all(n in cmdline for n in needles)


def local_node_is_up(node_dir: Path) -> bool:
    """Whether the local node in ``node_dir`` runs, with its apt proxy forwarder: its
    record and /proc, without loading libcloud (every command to a node asks)."""
    try:
        rec = json.loads((node_dir / "node.json").read_text())
    except (FileNotFoundError, NotADirectoryError, ValueError):
        return False
    return (pid_alive(rec.get("pid"), "systemd-nspawn", str(node_dir / "rootfs"))
            and pid_alive(rec.get("supervisor_pid"), "local_supervise.py", str(node_dir)))


def _follow_address(name: str, entry: dict, node: object) -> str | None:
    """The node's current address, moving our records if a restart changed it."""
    from silverlining import etchosts, transport
    from silverlining.providers import node_address, private_address

    address = node_address(node) if node is not None else entry.get("address")
    old = entry.get("address")
    if address and old and address != old:
        # A restarted local node may get a new address: same node, same key.
        NodeRegistry().put(name, address=address)
        transport.move_host_key(old, address)
        if etchosts.lookup(name) == old:
            etchosts.add(name, address)
        entry["address"] = address
    private = private_address(node) if node is not None else None
    if private and private != entry.get("private_address"):
        NodeRegistry().put(name, private_address=private)
        entry["private_address"] = private
    return address


def node_dns(node: str) -> DnsConfig | None:
    """The ``[dns:NAME]`` of the provider the registered ``node`` was created with
    (read without loading any provider library: most deploys have none)."""
    from silverlining.userconfig import UserConfig

    provider = (NodeRegistry().get(node) or {}).get("provider")
    cfg = UserConfig.load().providers.get(provider) if provider else None
    return cfg.dns if cfg is not None else None
