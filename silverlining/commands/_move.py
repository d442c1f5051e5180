"""An app's database moved from its node to a services node, in the first
``silver update ... --services-node`` of its location (docs/services-node.md).

The node serving the location answers 503 from the backup on, so no write lands
in the copy being left; the backup is fetched and checked here, restored on the
services node once it holds the app's (empty) database, and the node is put back
on the air after the deploy that points the app at the services node (or at once
when the services node refuses the databases: the app still uses its own). The
old database stays on the node, unused, until the user drops it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from silverlining import protocol
from silverlining.backups import verify
from silverlining.commands._remote import open_node
from silverlining.commands.backup import fetch
from silverlining.commands.restore import upload
from silverlining.console import Console
from silverlining.errors import SilverError
from silverlining.locations import Location


@dataclass
class Moving:
    member: str
    app: str
    archive: Path
    disabled: bool          # taken off the air by the move (put back after the deploy)


def take(console: Console, member: str, location: Location, workdir: Path) -> Moving | None:
    """``member`` off the air and the app's data in a checked archive in ``workdir``;
    None when the location serves nothing there or the app has no data of its own."""
    session = open_node(console, member, check=False)
    try:
        try:
            app = session.send(protocol.Served(location=str(location)), quiet=True)["app"]
        except SilverError:
            return None         # a first deploy: nothing to move
        off = session.send(protocol.Disable(location=str(location)), quiet=True)["changed"]
        try:
            result = session.send(protocol.Backup(location=str(location)), timeout=None)
        except SilverError as exc:
            if off:
                session.send(protocol.Enable(location=str(location)), quiet=True)
            if "nothing to back up" in exc.message:
                return None     # its database is elsewhere already
            raise
        archive = workdir / f"{result['name']}.tar.gz"
        fetch(session, result, archive)
    finally:
        session.close()
    console.step(member, f"{app}'s data taken for the services node (503 until the deploy)")
    return Moving(member, app, archive, off)


def put(console: Console, node: str, location: Location, moving: Moving) -> None:
    """The archive restored on the services node (checked there again first)."""
    manifest = verify(moving.archive)
    session = open_node(console, node, check=False)
    try:
        token = upload(session, location, moving.archive, manifest.app, False)
        result = session.send(protocol.Restore(location=str(location), upload=token),
                              timeout=None)
    finally:
        session.close()
    console.step(node, f"restored {', '.join(result['services'])} of {moving.app} from "
                 f"{moving.member}")


def back_on(console: Console, location: Location, moving: Moving, deployed: bool) -> None:
    """The member on the air again after the deploy; left off when it failed (its
    running version would still use the node's own database)."""
    if not deployed:
        console.warn(f"{moving.member}: {location} left disabled: its data is on the services "
                     "node now, but the deploy that points the app there failed; fix it and "
                     f"update again (the backup is {moving.archive})")
        return
    moving.archive.unlink(missing_ok=True)      # the node keeps the old copy anyway
    _enable(console, location, moving)
    console.out(f"{moving.member}: {moving.app}'s old database is left on the node, unused "
                "(drop it when you no longer need it: docs/services-node.md)")


def called_off(console: Console, location: Location, moving: Moving) -> None:
    """The services node did not take the app's databases: nothing was recorded,
    restored or told to the member, whose app still uses the node's own database, so
    the member goes back on the air."""
    moving.archive.unlink(missing_ok=True)
    if _enable(console, location, moving):
        console.warn(f"{moving.member}: {location} serves from its own database again (the "
                     "move to the services node stopped)")


def _enable(console: Console, location: Location, moving: Moving) -> bool:
    """The member on the air again if the move took it off; when that fails, says how."""
    if not moving.disabled:
        return True
    try:
        session = open_node(console, moving.member, check=False)
        try:
            session.send(protocol.Enable(location=str(location)), quiet=True)
        finally:
            session.close()
    except SilverError as exc:
        console.warn(f"{moving.member}: {location} left answering 503 ({exc.message}): "
                     f"'silver enable {location} --node {moving.member}' once it answers")
        return False
    return True
