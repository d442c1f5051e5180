"""``silver deactivate LOCATION...``: stop serving locations (their instances stop after
draining); a services node holding the location's databases stops admitting the nodes
that stopped serving it."""

from __future__ import annotations

from silverlining import protocol, topology
from silverlining.commands import _balanced
from silverlining.commands._remote import node_for, open_node
from silverlining.console import Console
from silverlining.errors import SilverError
from silverlining.locations import parse_location


def run(console: Console, locations: tuple[str, ...], keep_prev: bool, node: str | None) -> int:
    by_node: dict[str, list[str]] = {}
    for text in locations:
        loc = parse_location(text)
        if node is None and (topo := topology.get(str(loc))) is not None:
            deactivate_balanced(console, topo, keep_prev)
            leave(console, str(loc), tuple(topo.members))
            continue
        by_node.setdefault(node_for(loc, node), []).append(str(loc))
    for target, locs in by_node.items():
        session = open_node(console, target, check=False)
        try:
            result = session.send(protocol.Deactivate(locations=tuple(locs),
                                                      keep_prev=keep_prev))
        finally:
            session.close()
        for item in result["removed"]:
            console.out(f"{item['location']} no longer served (was {item['app']}.{item['version']})")
        for loc in locs:
            leave(console, loc, (target,))
    return 0


def leave(console: Console, location: str, stopped: tuple[str, ...]) -> None:
    """The location's services node, if it has one, admits ``stopped`` no more."""
    services = topology.services_node(location)
    if services is None:
        return
    session = open_node(console, services, check=False)
    try:
        result = session.send(protocol.ServicesLeave(location=location, drop=stopped),
                              quiet=True)
    finally:
        session.close()
    console.out(f"{services}: no longer admits {', '.join(stopped)} to {location}'s "
                f"databases (kept; still admitted: {', '.join(result['members']) or 'none'})")


def deactivate_balanced(console: Console, topo: topology.Topology, keep_prev: bool) -> None:
    """Every member stops serving the location (and would serve it directly again),
    then the balancer stops fronting it."""
    results = _balanced.parallel(
        lambda m: _balanced.release(console, m, topo.location, keep_prev), topo.members)
    failed = {m: r.message for m, r in results.items() if isinstance(r, SilverError)}
    if failed:
        raise SilverError("; ".join(f"{m}: {why}" for m, why in failed.items()))
    with _balanced.balancer(console, topo) as lb:
        lb.drop()
    topology.remove(topo.location)
    for member in topo.members:
        console.out(f"{member}: {topo.location} no longer served")
    console.out(f"{topo.balancer}: no longer fronts {topo.location}")
