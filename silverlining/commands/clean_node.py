"""``silver clean-node NODE``: delete versions nothing points to, beyond the newest N."""

from __future__ import annotations

from silverlining import protocol
from silverlining.commands._remote import open_node
from silverlining.console import Console
from silverlining.errors import UsageError


def run(console: Console, node: str, dry_run: bool, keep: int) -> int:
    if keep < 0:
        raise UsageError("--keep must be 0 or more")
    session = open_node(console, node)
    try:
        result = session.send(protocol.Clean(keep=keep, dry_run=dry_run))
    finally:
        session.close()
    verb = "would delete" if dry_run else "deleted"
    for name in result["removed"]:
        console.out(f"{verb} {name}")
    if not result["removed"]:
        console.out("nothing to delete")
    return 0
