"""``silver activate LOCATION VERSION|prev``: serve a kept version again (rollback).

No upload: the node starts the kept instance, puts it through the health
gate and switches the location to it.
"""

from __future__ import annotations

import re

from silverlining.commands._remote import node_for, open_node, who
from silverlining.console import Console
from silverlining.errors import UsageError
from silverlining.locations import parse_location


_VERSION_RE = re.compile(r"^(prev|v?[1-9][0-9]*|[a-z0-9][a-z0-9_-]*\.v[1-9][0-9]*)\Z")


def run(console: Console, location: str, version: str, node: str | None) -> int:
    loc = parse_location(location)
    if not _VERSION_RE.match(version):
        raise UsageError(f"bad version {version!r}: use prev, vN, N or APP.vN")
    session = open_node(console, node_for(loc, node))
    try:
        result = session.call("activate", str(loc), version, "--who", who())
    finally:
        session.close()
    if result.get("unchanged"):
        console.out(f"{loc} already serves {result['app']}.{result['version']}")
    else:
        was = f" (was {result['previous']})" if result.get("previous") else ""
        console.out(f"{loc} now serves {result['app']}.{result['version']}{was}")
    return 0
