"""``silver logs LOCATION [-f] [-n N]``: the log of the version live at a location.

It is the instance's log file in ``SILVER_LOGS`` on the node: the app
server's messages, the app's output and its tracebacks; ``--process NAME`` and
``--cron NAME`` show a worker's or a cron job's log instead, ``--journal`` what
systemd recorded for the version's units (a failed start, a crash loop, a
kill), and ``--version vN`` any kept version (one whose deploy failed, say).
``-f`` follows it until interrupted.
"""

from __future__ import annotations

from silverlining import protocol
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
    loc = parse_location(location)
    session = open_node(console, node_for(loc, node))
    try:
        live = session.send(protocol.Served(location=str(loc)), quiet=True)
        if version:          # a kept version of the app served there (e.g. one that failed)
            live["version"] = version if version.startswith("v") else f"v{version}"
        what = " (systemd journal)" if journal else f" (process {process})" if process else \
            f" (cron {cron})" if cron else f" (job {job})" if job else ""
        console.info(f"[{session.name}] log of {live['app']}.{live['version']}{what} at {loc}")
        return session.send_raw(protocol.Logs(
            app=live["app"], version=live["version"], lines=lines, follow=follow,
            process=process, cron=cron, job=job, journal=journal), pty=follow)
    finally:
        session.close()
