"""``silver deactivate LOCATION...``: stop serving locations (their instances stop after draining)."""

from __future__ import annotations

from silverlining.commands._remote import node_for, open_node, who
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
            args = ["deactivate", *locs, "--who", who()]
            if keep_prev:
                args.append("--keep-prev")
            result = session.call(*args)
        finally:
            session.close()
        for item in result["removed"]:
            console.out(f"{item['location']} no longer served (was {item['app']}.{item['version']})")
    return 0
