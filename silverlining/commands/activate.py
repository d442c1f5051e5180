"""``silver activate LOCATION VERSION|prev``: serve a kept version again (rollback).

No upload: the node starts the kept instance, puts it through the health
gate and switches the location to it. ``--restore-data`` also brings back
the data that version left, from the backup ``silver update --backup`` took
before replacing it (the app answers 503 meanwhile). When the location's databases
are on a services node, that backup is restored there, with every member off the
air until the version is live again.
"""

from __future__ import annotations

import re

from silverlining import protocol, topology
from silverlining.commands import _balanced
from silverlining.commands._remote import node_for, open_node
from silverlining.commands._services import off_the_air
from silverlining.console import Console
from silverlining.errors import SilverError, UsageError
from silverlining.locations import Location, parse_location


_VERSION_RE = re.compile(r"^(prev|v?[1-9][0-9]*|[a-z0-9][a-z0-9_-]*\.v[1-9][0-9]*)\Z")


def run(console: Console, location: str, version: str, node: str | None,
        restore_data: bool) -> int:
    loc = parse_location(location)
    if not _VERSION_RE.match(version):
        raise UsageError(f"bad version {version!r}: use prev, vN, N or APP.vN")
    if node is None and restore_data and (services := topology.services_node(str(loc))):
        return restore_on_services_node(console, loc, version, services)
    if node is None and (topo := topology.get(str(loc))) is not None:
        if restore_data:
            raise UsageError(f"{loc} is balanced: --restore-data is for one node (give --node)")
        return _balanced.activate(console, topo, version)
    return activate_one(console, loc, version, node_for(loc, node), restore_data)


def activate_one(console: Console, loc: Location, version: str, node: str,
                 restore_data: bool = False) -> int:
    session = open_node(console, node, check=False)
    try:
        result = session.send(protocol.Activate(location=str(loc), version=version,
                                                restore_data=restore_data),
                              timeout=None if restore_data else 600)
    finally:
        session.close()
    if result.get("unchanged"):
        console.out(f"{loc} already serves {result['app']}.{result['version']}")
    else:
        was = f" (was {result['previous']})" if result.get("previous") else ""
        console.out(f"{loc} now serves {result['app']}.{result['version']}{was}")
    if result.get("restored"):
        console.out(f"{result['app']}: data restored from {result['restored']}")
    return 0


def restore_on_services_node(console: Console, loc: Location, version: str,
                             services: str) -> int:
    """``--restore-data`` where the databases are on a services node: every member off
    the air, the backup of ``version``'s data restored there, ``version`` activated
    on the members, and the members back on (left off if any of it failed)."""
    m = re.match(r"^(?:[a-z0-9][a-z0-9_-]*\.)?v?([1-9][0-9]*)\Z", version)
    if m is None:
        raise UsageError(f"--restore-data on a services node: give the version (vN), "
                         f"not {version!r}")
    version = f"v{m.group(1)}"
    with off_the_air(console, services, loc) as members:
        session = open_node(console, services, check=False)
        try:
            restored = session.send(protocol.Restore(location=str(loc), data_of=version),
                                    timeout=None)
        finally:
            session.close()
        console.out(f"{restored['app']}: data of {version} restored on {services}")
        topo = topology.get(str(loc))
        code = (_balanced.activate(console, topo, version) if topo is not None else
                max(activate_one(console, loc, version, m) for m in members))
        if code:
            raise SilverError(f"{loc}: activating {version} failed; its members are left "
                              "disabled ('silver enable' them when it is fixed)")
    return 0
