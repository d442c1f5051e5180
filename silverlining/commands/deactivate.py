"""``silver deactivate LOCATION...``: stop serving locations (their instances stop after draining)."""

from __future__ import annotations

from silverlining import protocol
from silverlining.commands._remote import node_for, open_node
from silverlining.console import Console
from silverlining.locations import parse_location


def run(console: Console, locations: tuple[str, ...], keep_prev: bool, node: str | None) -> int:
    by_node: dict[str, list[str]] = {}
    for text in locations:
        loc = parse_location(text)
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
    return 0
