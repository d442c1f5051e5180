"""``silver clear LOCATION``: drop the app's data in every service and start empty.

Databases are dropped and re-created (same user and password), the file
services emptied, then the app's update_fetch runs on the live version (to
create its tables again). Asks first unless ``-y``. A location whose databases
are on a services node has them emptied there, then its first member runs the
update_fetch.
"""

from __future__ import annotations

from silverlining import protocol
from silverlining.commands._remote import open_node
from silverlining.commands._services import data_node
from silverlining.console import Console
from silverlining.errors import SilverError
from silverlining.locations import parse_location


def run(console: Console, location: str, node: str | None) -> int:
    loc = parse_location(location)
    where, services = data_node(loc, node)
    session = open_node(console, where, check=False)
    fetch_on: list[str] = []
    try:
        if services:
            held = session.send(protocol.ServicesMembers(location=str(loc)), quiet=True)
            app, fetch_on = held["app"], held["members"][:1]
        else:
            app = session.send(protocol.Served(location=str(loc)), quiet=True)["app"]
        if not console.confirm(f"Delete all data of {app} on {session.name} "
                               "(databases, files)?"):
            raise SilverError("nothing cleared")
        result = session.send(protocol.Clear(location=str(loc)), timeout=None)
    finally:
        session.close()
    for member in fetch_on:         # the app's update_fetch, where it runs
        session = open_node(console, member, check=False)
        try:
            session.send(protocol.Clear(location=str(loc)), timeout=None)
        finally:
            session.close()
    console.out(f"{result['app']} on {where}: cleared "
                f"{', '.join(result['services']) or 'no services'}")
    return 0
