"""A provider's own load balancer, through libcloud's load-balancer drivers.

``--balancer provider:NAME`` fronts a location with the load balancer of the
cloud that ``[provider:NAME]`` makes nodes on, where libcloud can drive one:

- ``driver = ec2``: an Elastic Load Balancer (Classic, libcloud's ``ELB``): an
  HTTP listener on port 80, instances registered and deregistered by id.
  libcloud's ELB driver cannot set its health check (no ConfigureHealthCheck)
  nor read instance health (no DescribeInstanceHealth), so ELB's own default
  check applies and "up" is waited for as ``balancer_ready_wait`` seconds.
- ``driver = gce``: a network load balancer (libcloud's ``GCE``: a regional
  forwarding rule on TCP port 80 to a target pool), with an HTTP health check
  of ``PATH/.silver/health`` and the location's host, whose verdict on each
  instance libcloud reads (``getHealth``).

libcloud's ``ALB`` driver (3.9) can create a balancer and register targets but
has no call to deregister one or to list them, so it cannot take a batch out
of rotation: it is not offered. Every call goes through ``call_provider``, so a
provider's refusal ends in one line.
"""

from __future__ import annotations

import hashlib
import re
import time
from abc import ABC, abstractmethod
from typing import Any

from libcloud.compute.base import Node, NodeDriver
from libcloud.loadbalancer.base import Algorithm, Driver, LoadBalancer, Member
from libcloud.loadbalancer.providers import get_driver as lb_get_driver
from libcloud.loadbalancer.types import Provider as LBProvider

from silverlining.errors import SilverError, UsageError
from silverlining.locations import Location
from silverlining.providers import call_provider, construct
from silverlining.userconfig import ProviderConfig

PORT = 80                   # members' nginx; the balancer listens on the same port
ELB_READY_WAIT = 330        # ELB's check at its slowest defaults: 10 passes, 30 s apart
GCE_READY_TIMEOUT = 180.0   # for a GCE member to be HEALTHY again after it was attached


def balancer_name(location: str) -> str:
    """The provider balancer's name for a location: valid for ELB (32 characters,
    letters, digits, '-') and GCE (lowercase, starts with a letter), distinct per
    location (a hash of it ends the name)."""
    digest = hashlib.sha256(location.encode()).hexdigest()[:6]
    slug = re.sub(r"[^a-z0-9]+", "-", location.lower()).strip("-")[:18].strip("-")
    return f"silver-{slug}-{digest}" if slug else f"silver-{digest}"


class ProviderBalancer(ABC):
    """One provider's load-balancer driver, with what the rolling rules need of it."""

    def __init__(self, cfg: ProviderConfig, compute: NodeDriver, lb: Driver) -> None:
        self.cfg, self.compute, self.lb = cfg, compute, lb

    def find(self, name: str) -> LoadBalancer | None:
        """Our balancer by name, if the provider has it."""
        for found in call_provider("listing load balancers", self.lb.list_balancers):
            if found.name == name:
                return found
        return None

    @abstractmethod
    def create(self, name: str, location: Location, nodes: list[Node]) -> LoadBalancer:
        """A new balancer for ``location``, with no member yet."""

    @abstractmethod
    def member_key(self, member: Member) -> str:
        """How a member the balancer lists names its node (``node_key`` of it)."""

    @abstractmethod
    def node_key(self, node: Node) -> str:
        """How the balancer names a node it has attached."""

    def attached(self, name: str) -> set[str]:
        """The ``node_key`` of each member the balancer has now."""
        balancer = self.find(name)
        if balancer is None:
            return set()
        return {self.member_key(m) for m in call_provider(
            f"listing the members of {name}", self.lb.balancer_list_members, balancer)}

    def attach(self, balancer: LoadBalancer, node: Node) -> None:
        call_provider(f"attaching {node.name} to {balancer.name}",
                      self.lb.balancer_attach_compute_node, balancer, node)

    def detach(self, balancer: LoadBalancer, node: Node) -> None:
        member = Member(node.id, None, PORT, balancer=balancer, extra={"node": node})
        call_provider(f"detaching {node.name} from {balancer.name}",
                      self.lb.balancer_detach_member, balancer, member)

    @abstractmethod
    def wait_up(self, balancer: LoadBalancer, nodes: list[Node]) -> None:
        """Return once the balancer sends traffic to ``nodes`` again."""

    @abstractmethod
    def source_network(self, node: Node) -> str | None:
        """The network the balancer's connections to ``node`` come from (a CIDR), or
        None when they carry the client's own address."""

    def destroy(self, balancer: LoadBalancer) -> None:
        call_provider(f"deleting load balancer {balancer.name}", self.lb.destroy_balancer,
                      balancer)

    def address(self, balancer: LoadBalancer) -> str:
        """Where clients reach it: a DNS name (ELB) or an IP address (GCE)."""
        return str(balancer.ip or "")


class ELB(ProviderBalancer):
    """A Classic ELB: instances by id, in the zones the first members are in."""

    def create(self, name: str, location: Location, nodes: list[Node]) -> LoadBalancer:
        # the zones it serves: the members' (libcloud takes them without the region)
        region = self.lb.region
        zones = sorted({str(n.extra.get("availability") or "").removeprefix(region)
                        for n in nodes} - {""}) or ["a"]
        return call_provider(f"creating load balancer {name}", self.lb.create_balancer,
                             name, PORT, "http", Algorithm.ROUND_ROBIN, [],
                             ex_members_availability_zones=zones)

    def member_key(self, member: Member) -> str:
        return str(member.id)

    def node_key(self, node: Node) -> str:
        return str(node.id)

    def source_network(self, node: Node) -> str | None:
        """The node's VPC: ELB's nodes sit in its subnets, on addresses of their own."""
        vpc = node.extra.get("vpc_id")
        if not vpc:
            raise SilverError(f"{node.name}: {self.compute.name} reports no VPC for it, so "
                              "its balancer's network is unknown (ELB in EC2-Classic is "
                              "not supported)")
        networks = call_provider(f"looking up VPC {vpc}", self.compute.ex_list_networks,
                                 network_ids=[vpc])
        if not networks or not networks[0].cidr_block:
            raise SilverError(f"{node.name}: {self.compute.name} lists no VPC {vpc}")
        return str(networks[0].cidr_block)

    def wait_up(self, balancer: LoadBalancer, nodes: list[Node]) -> None:
        """libcloud cannot ask ELB whether an instance is InService: wait the time its
        health check needs (``balancer_ready_wait``, docs/balancer.md)."""
        time.sleep(self.cfg.balancer_ready_wait if self.cfg.balancer_ready_wait is not None
                   else ELB_READY_WAIT)


class GCE(ProviderBalancer):
    """A forwarding rule to a target pool with an HTTP health check; instances by name."""

    def create(self, name: str, location: Location, nodes: list[Node]) -> LoadBalancer:
        hc_name = f"{name}-hc"
        checks = call_provider("listing health checks", self.lb.ex_list_healthchecks)
        check = next((c for c in checks if c.name == hc_name), None)
        if check is None:
            host = location.host.removeprefix(".") if location.host != "*" else None
            check = call_provider(
                f"creating health check {hc_name}", self.lb.ex_create_healthcheck, hc_name,
                host=host, path=f"{location.path}/.silver/health", port=PORT, interval=2,
                timeout=2, unhealthy_threshold=2, healthy_threshold=2,
                description=f"silverlining: {location}")
        return call_provider(f"creating load balancer {name}", self.lb.create_balancer,
                             name, str(PORT), "tcp", None, [], ex_healthchecks=[check])

    def member_key(self, member: Member) -> str:
        return str(member.id).rsplit("/", 1)[-1]    # a name, or the URL of a gone instance

    def node_key(self, node: Node) -> str:
        return node.name

    def source_network(self, node: Node) -> str | None:
        return None             # a pass-through balancer: the client's own address

    def wait_up(self, balancer: LoadBalancer, nodes: list[Node]) -> None:
        """Until GCE's health check finds each node HEALTHY in the target pool."""
        pool = balancer.extra["targetpool"]
        deadline = time.monotonic() + GCE_READY_TIMEOUT
        for node in nodes:
            while True:
                health = call_provider(f"reading the health of {node.name}",
                                       self.compute.ex_targetpool_get_health, pool, node)
                states = [h["health"] for h in health]
                if states and all(s == "HEALTHY" for s in states):
                    break
                if time.monotonic() > deadline:
                    raise SilverError(f"{node.name}: not HEALTHY at load balancer "
                                      f"{balancer.name} after {GCE_READY_TIMEOUT:.0f}s "
                                      f"({', '.join(states) or 'not in its pool'})")
                time.sleep(1)

    def destroy(self, balancer: LoadBalancer) -> None:
        checks = list(balancer.extra.get("healthchecks") or [])
        super().destroy(balancer)
        for check in checks:
            call_provider(f"deleting health check {check.name}",
                          self.compute.ex_destroy_healthcheck, check)


def open_balancer(cfg: ProviderConfig, compute: NodeDriver) -> ProviderBalancer:
    """The load-balancer side of ``[provider:NAME]``; a driver without one is refused
    in one line."""
    from libcloud.compute.drivers.ec2 import EC2NodeDriver
    from libcloud.compute.drivers.gce import GCENodeDriver

    if isinstance(compute, EC2NodeDriver):     # the same account, keys and region
        args: dict[str, Any] = {"access_id": compute.key, "secret": compute.secret,
                                "region": compute.region_name,
                                "token": getattr(compute, "token", None)}
        return ELB(cfg, compute, construct(lb_get_driver(LBProvider.ELB), "elb", args,
                                           cfg.path, f"provider:{cfg.name}"))
    if isinstance(compute, GCENodeDriver):
        return GCE(cfg, compute, lb_get_driver(LBProvider.GCE)(gce_driver=compute))
    raise UsageError(f"--balancer provider:{cfg.name}: driver {cfg.driver!r} has no load "
                     "balancer silver can drive (ec2: ELB, gce: GCE's network load "
                     "balancer); use an HAProxy node instead: --balancer NODE")
