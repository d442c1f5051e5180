"""``silver params LOCATION [--set NAME=VALUE] [--unset NAME]``: an app's parameters.

Without changes, lists them (hidden ones as set/unset, never their value).
With changes, the node starts the live version again as a new version with
the new values, through the same health gate and switch as a deploy: on a
balanced location with no ``--node``, every member, rolling (each keeps its own
copy of the values).
"""

from __future__ import annotations

from silverlining import protocol, topology
from silverlining.commands import _balanced
from silverlining.commands._params import changes_input, parse_assignments, read_param_files
from silverlining.commands._remote import node_for, open_node
from silverlining.console import Console
from silverlining.locations import parse_location


def run(console: Console, location: str, node: str | None, sets: tuple[str, ...],
        set_files: tuple[str, ...], unsets: tuple[str, ...]) -> int:
    loc = parse_location(location)
    values = {**parse_assignments(sets, "--set"), **read_param_files(set_files)}
    topo = topology.get(str(loc)) if node is None else None
    if (values or unsets) and topo is not None and topo.members:
        return _balanced.redeploy(console, topo, changes_input(values, unsets))
    session = open_node(console, node_for(loc, node))
    try:
        if values or unsets:
            result = session.send(protocol.Redeploy(location=str(loc)),
                                  input=changes_input(values, unsets))
            console.out(f"{result['app']}.{result['version']} live at {loc} with the new "
                        f"parameters (was {result['previous']})")
            return 0
        result = session.send(protocol.Params(location=str(loc)), quiet=True)
    finally:
        session.close()
    rows = result["params"]
    if not rows:
        console.out(f"{result['app']} declares no parameters")
    for row in rows:
        if row["hidden"]:
            shown = "set (hidden)" if row["state"] == "set" else row["state"]
        else:
            shown = f"{row['value']!r}" + (" (default)" if row["state"] == "default" else "") \
                if row["state"] != "unset" else "unset"
        console.out(f"{row['name']:<20} {row['env']:<20} {shown}"
                    + (f"  # {row['description']}" if row["description"] else ""))
    return 0
