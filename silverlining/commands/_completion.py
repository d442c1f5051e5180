"""Shell completion (click's) for node names and locations.

Completion runs on every <Tab>, so it only reads the local registry (never
the network) and a broken registry or config completes nothing rather than
printing an error into the user's command line.
"""

from __future__ import annotations

import click
from click.shell_completion import CompletionItem

from silverlining.errors import SilverError
from silverlining.state import NodeRegistry


def _registry() -> dict[str, dict]:
    try:
        return NodeRegistry().all()
    except (SilverError, OSError):
        return {}


def node_names() -> list[str]:
    """The nodes made by ``silver create-node`` (the names every command accepts)."""
    return sorted(_registry())


def known_locations() -> list[str]:
    """Node names (a bare host is a location) and the locations deployed to them."""
    found = set(node_names())
    for entry in _registry().values():
        found.update(loc for loc in entry.get("locations", []) if isinstance(loc, str))
    return sorted(found)


def complete_nodes(_ctx: click.Context, _param: click.Parameter,
                   incomplete: str) -> list[CompletionItem]:
    return [CompletionItem(n) for n in node_names() if n.startswith(incomplete)]


def complete_locations(_ctx: click.Context, _param: click.Parameter,
                       incomplete: str) -> list[CompletionItem]:
    return [CompletionItem(loc) for loc in known_locations() if loc.startswith(incomplete)]


def complete_providers(_ctx: click.Context, _param: click.Parameter,
                       incomplete: str) -> list[CompletionItem]:
    from silverlining.userconfig import UserConfig

    try:
        names = UserConfig.load().providers
    except (SilverError, OSError):
        return []
    return [CompletionItem(n) for n in sorted(names) if n.startswith(incomplete)]
