"""``silver restart LOCATION [--process NAME]``: start an app again without a deploy.

The web app restarts gracefully: the node starts the live version's files as
a new version behind the health gate and switches to it, as an update would,
with nothing uploaded (so a bad restart leaves the running one serving).
``--process NAME`` restarts that worker's instances of the live version. On a
balanced location with no ``--node``, every member, rolling as a deploy does.
"""

from __future__ import annotations

from silverlining import protocol, topology
from silverlining.commands import _balanced
from silverlining.commands._remote import node_for, open_node
from silverlining.console import Console
from silverlining.locations import parse_location


def run(console: Console, location: str, node: str | None, process: str | None) -> int:
    loc = parse_location(location)
    topo = topology.get(str(loc)) if node is None else None
    if topo is not None and topo.members:
        if process:
            results = _balanced.on_members(
                console, topo, protocol.RestartProcess(location=str(loc), process=process))
            for member, result in results.items():
                console.out(f"{member}: {result['app']}.{result['version']}: restarted "
                            f"{len(result['units'])} instance(s) of process {process}")
            return 0
        return _balanced.redeploy(console, topo, "{}")
    session = open_node(console, node_for(loc, node), check=False)
    try:
        if process:
            result = session.send(protocol.RestartProcess(location=str(loc), process=process))
            console.out(f"{result['app']}.{result['version']}: restarted {len(result['units'])}"
                        f" instance(s) of process {process}")
            return 0
        result = session.send(protocol.Redeploy(location=str(loc)), input="{}")
    finally:
        session.close()
    console.out(f"{result['app']}.{result['version']} live at {loc} (restarted from "
                f"{result['previous']})")
    return 0
