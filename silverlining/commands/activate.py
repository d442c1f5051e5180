"""``silver activate LOCATION VERSION|prev``: serve a kept version again (rollback).

No upload: the node starts the kept instance, puts it through the health
gate and switches the location to it. ``--restore-data`` also brings back
the data that version left, from the backup ``silver update --backup`` took
before replacing it (the app answers 503 meanwhile).
"""

from __future__ import annotations

import re

from silverlining import protocol, topology
from silverlining.commands import _balanced
from silverlining.commands._remote import node_for, open_node
from silverlining.console import Console
from silverlining.errors import UsageError
from silverlining.locations import parse_location


_VERSION_RE = re.compile(r"^(prev|v?[1-9][0-9]*|[a-z0-9][a-z0-9_-]*\.v[1-9][0-9]*)\Z")


def run(console: Console, location: str, version: str, node: str | None,
        restore_data: bool) -> int:
    loc = parse_location(location)
    if not _VERSION_RE.match(version):
        raise UsageError(f"bad version {version!r}: use prev, vN, N or APP.vN")
    if node is None and (topo := topology.get(str(loc))) is not None:
        if restore_data:
            raise UsageError(f"{loc} is balanced: --restore-data is for one node (give --node)")
        return _balanced.activate(console, topo, version)
    session = open_node(console, node_for(loc, node), check=False)
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
