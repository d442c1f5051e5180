"""``silver clear LOCATION``: drop the app's data in every service and start empty.

Databases are dropped and re-created (same user and password), the file
services emptied, then the app's update_fetch runs on the live version (to
create its tables again). Asks first unless ``-y``.
"""

from __future__ import annotations

from silverlining import protocol
from silverlining.commands._remote import node_for, open_node
from silverlining.console import Console
from silverlining.errors import SilverError
from silverlining.locations import parse_location


def run(console: Console, location: str, node: str | None) -> int:
    loc = parse_location(location)
    session = open_node(console, node_for(loc, node), check=False)
    try:
        live = session.send(protocol.Served(location=str(loc)), quiet=True)
        if not console.confirm(f"Delete all data of {live['app']} on {session.name} "
                               "(databases, files)?"):
            raise SilverError("nothing cleared")
        result = session.send(protocol.Clear(location=str(loc)), timeout=None)
    finally:
        session.close()
    console.out(f"{result['app']} on {session.name}: cleared "
                f"{', '.join(result['services']) or 'no services'}")
    return 0
