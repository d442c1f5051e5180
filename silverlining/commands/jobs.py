"""``silver jobs LOCATION [--stop ID]``: the detached runs of the app at a location.

A detached run (``silver run --detach``) is a transient systemd unit of the
app's user on the node: it outlives the SSH session. This lists each run
(id, what it runs, running or its exit status) or stops one. ``silver logs
LOCATION --job ID`` shows its output and ``silver run --attach ID LOCATION``
follows it to the end.
"""

from __future__ import annotations

from silverlining import protocol
from silverlining.commands._remote import node_for, open_node
from silverlining.console import Console
from silverlining.locations import parse_location


def run(console: Console, location: str, node: str | None, stop: str | None) -> int:
    loc = parse_location(location)
    session = open_node(console, node_for(loc, node))
    try:
        if stop:
            result = session.send(protocol.JobStop(location=str(loc), id=stop))
            console.out(f"{result['app']}: job {result['id']} stopped")
            return 0
        result = session.send(protocol.Jobs(location=str(loc)), quiet=True)
    finally:
        session.close()
    if not result["jobs"]:
        console.out(f"{result['app']}: no detached runs")
    for job in result["jobs"]:
        console.out(f"{job['id']}  {job['status']:<10}  {job['what']}")
    return 0
