"""``silver logs LOCATION [-f] [-n N]``: the log of the version live at a location.

It is the instance's log file in ``SILVER_LOGS`` on the node: the app
server's messages, the app's output and its tracebacks; ``--process NAME`` and
``--cron NAME`` show a worker's or a cron job's log instead, ``--journal`` what
systemd recorded for the version's units (a failed start, a crash loop, a
kill), and ``--version vN`` any kept version (one whose deploy failed, say).
``-f`` follows it until interrupted.
"""

from __future__ import annotations

from silverlining.commands._remote import node_for, open_node
from silverlining.console import Console
from silverlining.errors import UsageError
from silverlining.locations import parse_location


def run(console: Console, location: str, follow: bool, lines: int, node: str | None,
        process: str | None = None, cron: str | None = None, version: str | None = None,
        journal: bool = False, job: str | None = None) -> int:
    if lines < 0:
        raise UsageError(f"-n {lines}: give a number of lines, 0 or more")
    if sum(bool(x) for x in (process, cron, job, journal)) > 1:
        raise UsageError("give one of --process, --cron, --job and --journal")
    which = ["--process", process] if process else ["--cron", cron] if cron else \
        ["--job", job] if job else []
    if journal:
        which.append("--journal")
    loc = parse_location(location)
    session = open_node(console, node_for(loc, node))
    try:
        live = session.call("served", str(loc), quiet=True)
        if version:          # a kept version of the app served there (e.g. one that failed)
            live["version"] = version if version.startswith("v") else f"v{version}"
        what = " (systemd journal)" if journal else \
            f" ({which[0][2:]} {which[1]})" if which else ""
        console.info(f"[{session.name}] log of {live['app']}.{live['version']}{what} at {loc}")
        return session.raw("logs", live["app"], live["version"], "-n", str(lines),
                           *(["-f"] if follow else []), *which, pty=follow)
    finally:
        session.close()
