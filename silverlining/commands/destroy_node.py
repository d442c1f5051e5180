"""``silver destroy-node``: destroy servers and every local trace of them.

Besides the provider's node, the DNS records and SSH key create-node
registered for it (a key only when no other node uses it), its registry
entry, recorded host key, its place in balanced locations and our /etc/hosts
line go too, so a new node that
gets the same name or address starts clean instead of tripping over a stale
host key.
"""

from __future__ import annotations

from dataclasses import dataclass

from libcloud.compute.base import Node, NodeDriver

from silverlining import etchosts, topology, transport
from silverlining.console import Console
from silverlining.errors import SilverError, UsageError
from silverlining.inifile import suggest
from silverlining.locations import check_hostname
from silverlining.providers import (call_provider, clouds, dns, find_node, node_address,
                                    open_provider)
from silverlining.state import NodeRegistry
from silverlining.userconfig import ProviderConfig


@dataclass
class Target:
    name: str
    cfg: ProviderConfig
    driver: NodeDriver
    node: Node | None
    address: str | None
    entry: dict


def run(console: Console, hostnames: tuple[str, ...]) -> int | None:
    registry = NodeRegistry()
    names = list(dict.fromkeys(check_hostname(h.lower()) for h in hostnames))
    by_provider: dict[str | None, list[str]] = {}
    for name in names:
        entry = registry.get(name) or {}
        provider = entry.get("provider") or console.provider
        if console.provider and entry.get("provider") not in (None, console.provider):
            raise UsageError(f"node {name!r} belongs to provider {entry['provider']!r}, "
                             f"not {console.provider!r}")
        by_provider.setdefault(provider, []).append(name)
    targets: list[Target] = []
    for provider, group in by_provider.items():
        cfg, driver = open_provider(provider)
        nodes = call_provider("listing nodes", driver.list_nodes)
        for name in group:
            entry = registry.get(name) or {}
            node = find_node(nodes, name, entry.get("node_id"))
            if node is None and not entry:
                known = list(registry.all()) + [n.name for n in nodes]
                raise UsageError(f"unknown node {name!r}: not created with silver create-node "
                                 f"and provider {cfg.name!r} has no node of that name"
                                 f"{suggest(name, known)}")
            address = entry.get("address") or (node_address(node) if node else None)
            targets.append(Target(name, cfg, driver, node, address, entry))
    listing = ", ".join(t.name + (f" ({t.address})" if t.address else "") for t in targets)
    if not console.confirm(f"Destroy {listing}? Everything on them is lost"):
        console.info("nothing destroyed")
        return 1
    for target in targets:
        _destroy(console, registry, target)
    return None


def _destroy(console: Console, registry: NodeRegistry, target: Target) -> None:
    if target.node is None:
        console.warn(f"{target.name}: the provider has no such node any more; "
                     "removing local records only")
    else:
        console.step(target.name, "destroying")
        call_provider(f"destroying node {target.name}", target.driver.destroy_node, target.node)
    _remove_dns(console, target)
    _release(console, target)
    if target.address:
        transport.forget_host_key(target.address)
    registry.remove(target.name)
    for what in topology.forget_node(target.name):
        console.step(target.name, what)
    try:
        if etchosts.remove(target.name) == "removed":
            console.step(target.name, f"removed from {etchosts.hosts_path()}")
    except SilverError as exc:
        console.warn(exc.message)
    console.step(target.name, "destroyed")


def _remove_dns(console: Console, target: Target) -> None:
    """Delete the DNS records create-node wrote for this node."""
    records = target.entry.get("dns") or []
    if not records:
        return
    if target.cfg.dns is None:
        console.warn(f"{target.name}: [provider:{target.cfg.name}] has no 'dns =' any more; "
                     f"left its DNS records alone: {', '.join(r['name'] for r in records)}")
        return
    for what in dns.remove(dns.open_zone(target.cfg.dns), records):
        console.step(target.name, f"removed DNS record {what}")


def _release(console: Console, target: Target) -> None:
    """Remove what create-node registered at the provider for this node alone."""
    records = target.entry.get("cloud") or {}
    profile = clouds.profile_for(target.driver)
    if not records or profile is None:
        return
    for what in profile.release(call_provider, target.driver, records,
                                clouds.used_elsewhere(target.cfg.name, target.name)):
        console.step(target.name, f"removed {what}")
