"""``silver restore BACKUP LOCATION``: put a backup's data back into the app at LOCATION.

A local archive is checked here first (every part against the manifest's
sha256), then uploaded and checked again by the node before any data is
touched; ``remote:NAME`` is a backup kept on the node. A backup of another
app is refused unless ``--force-app``. The app answers 503 during the
restore. A location whose databases are on a services node is restored there,
its members answering 503 meanwhile.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from silverlining import protocol
from silverlining.backups import check_name, verify
from silverlining.commands._remote import NodeSession, open_node
from silverlining.commands._services import data_node, off_the_air
from silverlining.commands.backup import REMOTE
from silverlining.console import Console
from silverlining.errors import UsageError
from silverlining.locations import Location, parse_location
from silverlining.node import paths
from silverlining.transport import rsync


def upload(session: NodeSession, loc: Location, archive: Path, of_app: str,
           force_app: bool) -> str:
    """A checked local archive sent to the node for a restore; its upload token."""
    prep = session.send(protocol.RestorePrepare(location=str(loc)), quiet=True)
    if of_app != prep["app"] and not force_app:
        raise UsageError(f"{archive} is a backup of {of_app}, not of {prep['app']} "
                         "(--force-app to restore it anyway)")
    session.console.step(session.name, f"uploading {archive.name}")
    rsync(str(archive), session.address, f"{prep['upload_dir']}/", user=paths.DEPLOY_USER,
          label=session.name)
    return prep["token"]


def run(console: Console, backup: str, location: str, force_app: bool, node: str | None) -> int:
    loc = parse_location(location)
    archive = None
    if backup.startswith(REMOTE):
        source = {"remote": check_name(backup[len(REMOTE):])}
    else:
        archive = Path(backup).expanduser()
        if not archive.is_file():
            raise UsageError(f"no backup file {backup}")
        manifest = verify(archive)
        console.detail(f"{archive}: backup of {manifest.app}.{manifest.version} taken "
                       f"{manifest.time} ({', '.join(manifest.services)}), checksums ok")
    where, services = data_node(loc, node)
    session = open_node(console, where)
    try:
        if archive is not None:
            source = {"upload": upload(session, loc, archive, manifest.app, force_app)}
        with off_the_air(console, where, loc) if services else contextlib.nullcontext():
            result = session.send(protocol.Restore(location=str(loc), force_app=force_app,
                                                   **source), timeout=None)
    finally:
        session.close()
    made = result["backup"]
    console.out(f"{result['app']}: restored {', '.join(result['services'])} from the backup "
                f"of {made['app']}.{made['version']} taken {made['time']}")
    return 0
