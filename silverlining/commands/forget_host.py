"""``silver forget-host NODE...``: drop a node's recorded SSH host key.

The one explicit way out when a node's key changed for a reason you know
(it was re-installed): silver never replaces a recorded key by itself. The
next ``silver create-node NODE --if-not-exists --wait`` records the new one.
"""

from __future__ import annotations

from silverlining import nodes, transport
from silverlining.console import Console


def run(console: Console, hostnames: tuple[str, ...]) -> int:
    for name in hostnames:
        where = nodes.resolve(name, start=False)
        if transport.forget_host_key(where.address):
            console.out(f"{where.name}: forgot the host key of {where.address}")
        else:
            console.out(f"{where.name}: no host key was recorded for {where.address}")
    return 0
