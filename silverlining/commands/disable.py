"""``silver disable`` / ``silver enable``: take an app off the air (503 page) and back.

Takes effect at once on every location of the app; requests from the node
itself still reach it, so it can be checked before it is enabled again.
"""

from __future__ import annotations

from silverlining import protocol, topology
from silverlining.commands import _balanced
from silverlining.commands._remote import node_for, open_node
from silverlining.console import Console
from silverlining.errors import UsageError
from silverlining.locations import parse_location


def run(console: Console, disable: bool, location: str | None, app: str | None,
        node: str | None) -> int:
    verb = "disable" if disable else "enable"
    if bool(location) == bool(app):
        raise UsageError(f"{verb}: give either LOCATION or --app NAME")
    if app:
        if not node:
            raise UsageError(f"{verb} --app {app}: give --node too")
        target, where = node, {"app": app}
    else:
        loc = parse_location(location or "")
        target, where = node_for(loc, node), {"location": str(loc)}
    command = protocol.Disable if verb == "disable" else protocol.Enable
    if location and node is None and (topo := topology.get(str(loc))) is not None:
        for member, result in _balanced.on_members(console, topo, command(**where)).items():
            console.out(f"{result['app']} on {member}: "
                        + ("disabled" if result["disabled"] else "enabled"))
        return 0
    session = open_node(console, target, check=False)
    try:
        result = session.send(command(**where), quiet=True)
    finally:
        session.close()
    state = "disabled (503 for everyone but the node)" if result["disabled"] else "enabled"
    already = "" if result["changed"] else "already "
    console.out(f"{result['app']} on {session.name}: {already}{state}")
    return 0
