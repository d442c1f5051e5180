"""A location served by several members behind a balancer node (docs/balancer.md).

Shared by ``update`` and ``activate`` (rolling changes), ``deactivate`` and
``disable`` (every member) and ``query`` (a balancer's view). A rolling change
goes ``batch`` members at a time: the batch is drained at the balancer (HAProxy
on a node, or a provider's load balancer: ``Front``), changed through each
member's own health gate, and put back (the balancer's own check must see it up
before the next batch is drained). The first batch that fails stops
the rollout, and every member already changed goes back to the version it
served before, through the same steps: the location never keeps serving a
version that failed anywhere.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from silverlining import nodes, protocol, topology
from silverlining.commands._front import Front, guard_members, is_provider, parallel
from silverlining.commands._remote import NodeSession, open_node
from silverlining.console import Console
from silverlining.errors import SilverError, UsageError
from silverlining.locations import Location
from silverlining.topology import Topology

@dataclass
class Change:
    """What one member did: the version it serves now and the one before."""

    node: str
    version: str
    previous: str | None
    changed: bool = True
    text: str = ""            # the line the report prints for it


def resolve(console: Console, location: Location, nodes_given: tuple[str, ...],
            balancer: str | None, batch: str | None,
            remove: tuple[str, ...] = ()) -> Topology | None:
    """The location's topology for this command: the record here, else the balancer's
    (``--balancer``), with ``--node`` added, ``--remove-node`` taken out and ``--batch``
    set; None for a location that is not balanced."""
    key = str(location)
    record = topology.get(key)
    if record is not None and balancer and balancer != record.balancer:
        raise UsageError(f"{key} is balanced by {record.balancer}, not {balancer} (moving a "
                         "location to another balancer: 'silver deactivate' it first)")
    if record is None and balancer:
        record = fetch(console, balancer, key)
    if record is None:
        if remove or batch:
            what = "--remove-node" if remove else "--batch"
            raise UsageError(f"{what}: {key} is not balanced (give --balancer NAME)")
        return None
    members = list(dict.fromkeys([*record.members, *nodes_given]))
    unknown = sorted(set(remove) - set(members))
    if unknown:
        raise UsageError(f"--remove-node {', '.join(unknown)}: not a member of {key}")
    if batch:
        record.batch = topology.check_batch(batch)
    if record.balancer in members:
        raise UsageError(f"{record.balancer} is {key}'s balancer: it cannot be a member too")
    record.members = members
    return record


def fetch(console: Console, name: str, location: str) -> Topology:
    """The topology the balancer ``name`` records for ``location`` (a new one if it has
    none); for a provider's balancer, the members it has attached."""
    if is_provider(name):
        with balancer(console, Topology(location, name, [])) as lb:
            return Topology(location, name, lb.members_here())
    session = open_node(console, name, check=False)
    try:
        sites = session.send(protocol.BalancerQuery(location=location), quiet=True)["sites"]
    except SilverError:
        sites = {}          # not a balancer yet: the first deploy makes it one
    finally:
        session.close()
    site = sites.get(location)
    if site is None:
        return Topology(location, name, [])
    if site.get("services"):
        topology.put_services_node(location, site["services"], site.get("app", ""))
    return Topology(location, name, [m["name"] for m in site["members"]],
                    site.get("batch") or topology.DEFAULT_BATCH, site.get("app", ""))


def remember(sites: dict[str, dict], balancer: str) -> None:
    """Record what a balancer fronts on this machine (``silver query BALANCER``)."""
    for location, site in sites.items():
        if site.get("services"):
            topology.put_services_node(location, site["services"], site.get("app", ""))
        topology.put(Topology(location, balancer, [m["name"] for m in site["members"]],
                              site.get("batch") or topology.DEFAULT_BATCH,
                              site.get("app", "")))


class NodeFront(Front):
    """HAProxy on the balancer node, through its session, for one location."""

    def __init__(self, console: Console, topo: Topology) -> None:
        self.console, self.topo = console, topo
        self.session: NodeSession = open_node(console, topo.balancer, check=False)

    def close(self) -> None:
        self.session.close()

    def members_here(self) -> list[str]:
        sites = self.session.send(protocol.BalancerQuery(location=self.topo.location),
                                  quiet=True)["sites"]
        site = sites.get(self.topo.location)
        return [m["name"] for m in site["members"]] if site else []

    def apply(self, members: list[str], maint: list[str], app: str, https: str = "",
              services: str = "") -> None:
        pairs = tuple(f"{m}={nodes.peer_address(m, from_node=self.topo.balancer)}"
                      for m in members)
        self.session.send(protocol.BalancerApply(
            location=self.topo.location, app=app, members=pairs, maint=tuple(maint),
            batch=self.topo.batch, https=https, services=services))

    def drop(self) -> None:
        self.session.send(protocol.BalancerApply(location=self.topo.location, remove=True),
                          quiet=True)

    def _state(self, members: list[str], state: str) -> None:
        if members:
            self.console.step(self.topo.balancer, f"{state}: {', '.join(members)}")
            self.session.send(protocol.BalancerState(location=self.topo.location,
                                                     members=tuple(members), state=state),
                              quiet=True)

    def drain(self, members: list[str]) -> None:
        self._state(members, "drain")

    def ready(self, members: list[str]) -> None:
        self._state(members, "ready")

    def via(self, member: str) -> str:
        """The balancer's address as ``member`` sees it (what its nginx trusts)."""
        return nodes.peer_address(self.topo.balancer, from_node=member)

    def guard(self, members: list[str]) -> None:
        guard_members(self.console, self.topo.location, {m: self.via(m) for m in members})


@contextlib.contextmanager
def balancer(console: Console, topo: Topology) -> Iterator[Front]:
    if is_provider(topo.balancer):
        from silverlining.commands._provider_front import ProviderFront
        lb: Front = ProviderFront(console, topo)
    else:
        lb = NodeFront(console, topo)
    try:
        yield lb
    finally:
        lb.close()


@dataclass
class Rollout:
    done: list[Change]                  # members changed (and kept, unless rolled back)
    failed: dict[str, str]              # member -> why, in the batch that stopped it
    rolled_back: list[Change]           # members put back on their previous version
    stuck: dict[str, str]               # members whose way back failed too


def _drain(lb: Front, batch: list[str], members: list[str]) -> None:
    """Drain a batch, unless it holds every member: the location would have none
    left, and each member's own switch is without downtime anyway."""
    if set(members) - set(batch):
        lb.drain(batch)


def roll(console: Console, lb: Front, members: list[str],
         change: Callable[[str], Change], back: Callable[[Change], Change]) -> Rollout:
    """``change`` each member, batch by batch (drain, change, ready); on the first
    failing batch, ``back`` every member changed so far the same way."""
    done: list[Change] = []
    order = topology.batches(members, lb.topo.batch)
    for number, batch in enumerate(order, 1):
        console.info(f"batch {number} of {len(order)}: {', '.join(batch)}")
        _drain(lb, batch, members)
        results = parallel(change, batch)
        changed = [r for r in results.values() if isinstance(r, Change)]
        failed = {m: r.message for m, r in results.items() if isinstance(r, SilverError)}
        try:
            lb.ready(batch)
        except SilverError as exc:
            failed.update({m: exc.message for m in batch if m not in failed})
        done += changed
        if failed:
            back_done, stuck = _undo(console, lb, done, members, back)
            return Rollout([], failed, back_done, stuck)
    return Rollout(done, {}, [], {})


def _undo(console: Console, lb: Front, done: list[Change], members: list[str],
          back: Callable[[Change], Change]) -> tuple[list[Change], dict[str, str]]:
    undone: list[Change] = []
    stuck: dict[str, str] = {}
    todo = {c.node: c for c in done if c.changed}
    for batch in topology.batches(list(todo), lb.topo.batch):
        console.info(f"rolling back {', '.join(batch)}")
        _drain(lb, batch, members)
        results = parallel(lambda m: back(todo[m]), batch)
        for m, r in results.items():
            if isinstance(r, Change):
                undone.append(r)
            else:
                stuck[m] = r.message        # type: ignore[union-attr]
        try:
            lb.ready(batch)
        except SilverError as exc:          # back on its version, but out of rotation
            stuck.update({m: exc.message for m in batch if m not in stuck})
    return [c for c in undone if c.node not in stuck], stuck


def activate_on(console: Console, node: str, location: str, version: str) -> Change:
    """``activate`` on one member."""
    session = open_node(console, node, check=False)
    try:
        result = session.send(protocol.Activate(location=location, version=version),
                              timeout=600)
    finally:
        session.close()
    was = "unchanged" if result.get("unchanged") else f"was {result.get('previous') or 'nothing'}"
    return Change(node, result["version"], result.get("previous"),
                  changed=not result.get("unchanged"),
                  text=f"{node}: {result['app']}.{result['version']} live at {location} ({was})")


def undo_on(console: Console, location: str) -> Callable[[Change], Change]:
    """The way back for a changed member: activate the version it served before (a
    member that served nothing before stops serving the location)."""
    def back(change: Change) -> Change:
        if change.previous:
            return activate_on(console, change.node, location, change.previous)
        session = open_node(console, change.node, check=False)
        try:
            session.send(protocol.Deactivate(locations=(location,), keep_prev=True))
        finally:
            session.close()
        return Change(change.node, "", None, text=f"{change.node}: {location} not served")
    return back


def report_rollout(console: Console, location: str, rollout: Rollout) -> int:
    """The rollout's lines and exit status (1 when it stopped)."""
    for c in rollout.done:
        console.out(c.text)
    if not rollout.failed:
        return 0
    for node, why in rollout.failed.items():
        console.out(f"{node}: FAILED: {why}")
    console.out(f"rollout of {location} stopped: "
                + (", ".join(f"{c.node} back on {c.version}" if c.version else
                             f"{c.node} no longer serves it" for c in rollout.rolled_back)
                   or "no member had changed yet")
                + "; every member serves the version it served before")
    for node, why in rollout.stuck.items():
        console.out(f"{node}: rolling back FAILED: {why}")
    return 1


def activate(console: Console, topo: Topology, version: str) -> int:
    """``silver activate`` on a balanced location: every member, rolling."""
    with balancer(console, topo) as lb:
        rollout = roll(console, lb, topo.members,
                       lambda m: activate_on(console, m, topo.location, version),
                       undo_on(console, topo.location))
    return report_rollout(console, topo.location, rollout)


def redeploy_on(console: Console, node: str, location: str, changes: str) -> Change:
    """The live version started again on one member, with ``changes`` (params' JSON)."""
    session = open_node(console, node, check=False)
    try:
        result = session.send(protocol.Redeploy(location=location), input=changes,
                              timeout=600)
    finally:
        session.close()
    return Change(node, result["version"], result["previous"],
                  text=f"{node}: {result['app']}.{result['version']} live at {location} "
                       f"(restarted from {result['previous']})")


def redeploy(console: Console, topo: Topology, changes: str) -> int:
    """``restart`` or ``params --set`` on a balanced location: every member, rolling, so
    the members never serve with different parameters once it ends (a failing batch
    puts the members already restarted back on what they served)."""
    with balancer(console, topo) as lb:
        rollout = roll(console, lb, topo.members,
                       lambda m: redeploy_on(console, m, topo.location, changes),
                       undo_on(console, topo.location))
    return report_rollout(console, topo.location, rollout)


def on_members(console: Console, topo: Topology, command: protocol.Command) -> dict:
    """One node command on every member at once; the first error is raised."""
    def one(member: str) -> object:
        session = open_node(console, member, check=False)
        try:
            return session.send(command, quiet=True)
        finally:
            session.close()

    results = parallel(one, topo.members)
    for member, r in results.items():
        if isinstance(r, SilverError):
            raise SilverError(f"{member}: {r.message}")
    return results


def release(console: Console, member: str, location: str, keep_prev: bool = True) -> None:
    """A member taken out of the location: it stops serving it (``activate prev``
    brings it back) and serves the location directly again if it ever does."""
    session = open_node(console, member, check=False)
    try:
        with contextlib.suppress(SilverError):      # already not served there
            session.send(protocol.Deactivate(locations=(location,), keep_prev=keep_prev),
                         quiet=True)
        session.send(protocol.Balanced(location=location, via=None), quiet=True)
    finally:
        session.close()
