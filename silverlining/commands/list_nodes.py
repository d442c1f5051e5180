"""``silver list-nodes``: the provider's nodes as a table."""

from __future__ import annotations

from collections.abc import Sequence

from silverlining.console import Console
from silverlining.providers import call_provider, node_address, open_provider, state_name
from silverlining.state import NodeRegistry


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    """Left-aligned columns; the last column is not padded."""
    cells = [[str(c) for c in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return [" ".join(c.ljust(w) for c, w in zip(row[:-1], widths)) + " " + row[-1]
            if len(row) > 1 else row[0] for row in cells]


def run(console: Console) -> None:
    cfg, driver = open_provider(console.provider)
    nodes = call_provider("listing nodes", driver.list_nodes)
    # Our name for a node is the one we created it under, even if the provider renamed it.
    ours = {str(info.get("node_id")): name for name, info in NodeRegistry().all().items()
            if info.get("provider") == cfg.name and info.get("node_id") is not None}
    rows = sorted((ours.get(str(node.id), node.name), state_name(node),
                   node_address(node) or "-", cfg.name) for node in nodes)
    if not rows:
        console.info(f"no nodes at provider {cfg.name!r}")
        return
    for line in table(("NAME", "STATE", "ADDRESS", "PROVIDER"), rows):
        console.out(line)
