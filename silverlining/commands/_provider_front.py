"""A balanced location fronted by a provider's load balancer (``--balancer provider:NAME``).

The same rolling rules as behind HAProxy (``_balanced.roll``): a batch is
detached from the provider's balancer (its drain), deployed through each
member's own health gate, attached again, and the next batch waits until the
provider sees it up. The members are ``[provider:NAME]``'s own nodes, found by
the id ``create-node`` recorded; the balancer is named after the location
(``providers.balancers.balancer_name``), so it is found again without a record.
"""

from __future__ import annotations

from libcloud.compute.base import Node
from libcloud.loadbalancer.base import LoadBalancer

from silverlining.commands._front import PROVIDER_PREFIX, Front, guard_members
from silverlining.console import Console
from silverlining.errors import SilverError, UsageError
from silverlining.locations import parse_location
from silverlining.providers import call_provider, find_node, get_driver
from silverlining.providers.balancers import balancer_name, open_balancer
from silverlining.state import NodeRegistry
from silverlining.topology import Topology
from silverlining.userconfig import UserConfig


class ProviderFront(Front):
    def __init__(self, console: Console, topo: Topology) -> None:
        self.console, self.topo = console, topo
        self.cfg = UserConfig.load().provider(topo.balancer.removeprefix(PROVIDER_PREFIX))
        self.compute = get_driver(self.cfg)
        self.provider = open_balancer(self.cfg, self.compute)
        self.name = balancer_name(topo.location)
        self._nodes: list[Node] | None = None

    def _listed(self) -> list[Node]:
        if self._nodes is None:
            self._nodes = call_provider("listing nodes", self.compute.list_nodes)
        return self._nodes

    def node(self, member: str) -> Node:
        """The provider's node for a member; another provider's node is refused."""
        entry = NodeRegistry().get(member)
        if entry is None or entry.get("provider") != self.cfg.name:
            raise UsageError(f"{member} was not made with [provider:{self.cfg.name}]: its "
                             f"load balancer fronts only that provider's nodes")
        node = find_node(self._listed(), member, entry.get("node_id"))
        if node is None:
            raise SilverError(f"{member}: [provider:{self.cfg.name}] has no such node any "
                              "more ('silver destroy-node' forgets it)")
        return node

    def _ours(self) -> dict[str, Node]:
        """The registered nodes of this provider that it still has, by name."""
        found = {}
        for name, entry in NodeRegistry().all().items():
            if entry.get("provider") == self.cfg.name:
                node = find_node(self._listed(), name, entry.get("node_id"))
                if node is not None:
                    found[name] = node
        return found

    def _balancer(self) -> LoadBalancer:
        balancer = self.provider.find(self.name)
        if balancer is None:
            raise SilverError(f"{self.topo.balancer}: load balancer {self.name} of "
                              f"{self.topo.location} is gone (give the members with --node "
                              "and the next 'silver update' makes it again)")
        return balancer

    def members_here(self) -> list[str]:
        attached = self.provider.attached(self.name)
        return [name for name, node in self._ours().items()
                if self.provider.node_key(node) in attached]

    def apply(self, members: list[str], maint: list[str], app: str, https: str = "",
              services: str = "") -> None:
        """Make the balancer if the provider has none for the location, attach the
        members in rotation, detach those of ours it has that are no longer members.
        (A provider's balancer keeps no record of a services node: this machine's does.)"""
        nodes = {m: self.node(m) for m in members}
        balancer = self.provider.find(self.name)
        if balancer is None:
            balancer = self.provider.create(self.name, parse_location(self.topo.location),
                                            list(nodes.values()))
            self.console.step(self.topo.balancer, f"created load balancer {self.name}")
        attached = self.provider.attached(self.name)
        for m, node in nodes.items():
            if m not in maint and self.provider.node_key(node) not in attached:
                self.provider.attach(balancer, node)
        for m, node in self._ours().items():
            if m not in nodes and self.provider.node_key(node) in attached:
                self.provider.detach(balancer, node)
        self.console.step(self.topo.balancer, f"{self.name} serves {self.topo.location} "
                          f"at {self.provider.address(self._balancer())}: point the name "
                          "there")

    def drain(self, members: list[str]) -> None:
        if members:
            self.console.step(self.topo.balancer, f"detach: {', '.join(members)}")
            balancer, attached = self._balancer(), self.provider.attached(self.name)
            for m in members:
                node = self.node(m)
                if self.provider.node_key(node) in attached:
                    self.provider.detach(balancer, node)

    def ready(self, members: list[str]) -> None:
        if members:
            self.console.step(self.topo.balancer, f"attach: {', '.join(members)}")
            balancer, attached = self._balancer(), self.provider.attached(self.name)
            nodes = [self.node(m) for m in members]
            for node in nodes:
                if self.provider.node_key(node) not in attached:
                    self.provider.attach(balancer, node)
            self.provider.wait_up(self._balancer(), nodes)

    def guard(self, members: list[str]) -> None:
        """ELB's nodes connect from addresses in the members' VPC that change: each
        member lets the location through from that network only. GCE's balancer passes
        the client's own address, so there is nothing a member can tell it by; those
        members keep serving the location to whoever reaches them (docs/balancer.md,
        "The provider's balancer", says what is and is not guaranteed)."""
        vias = {m: self.provider.source_network(self.node(m)) for m in members}
        guard_members(self.console, self.topo.location,
                      {m: via for m, via in vias.items() if via is not None})

    def drop(self) -> None:
        balancer = self.provider.find(self.name)
        if balancer is not None:
            self.provider.destroy(balancer)
