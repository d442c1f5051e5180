"""``silver backup LOCATION [DEST]``: every service of the app in one checked archive.

The node dumps each service (pg_dump, mariadb-dump, the app's Redis keys,
tars of the file services) into a ``.tar.gz`` with a manifest of sha256 per
part. ``DEST`` is a local file (default ``./APP-TIME.tar.gz``; a directory
gets that name inside) fetched with rsync and checked here, or
``remote:NAME`` to keep it on the node (for ``silver restore remote:NAME``).
A location whose databases are on a services node is backed up there.
"""

from __future__ import annotations

import os
from pathlib import Path

from silverlining import protocol
from silverlining.backups import BackupError, check_name, verify
from silverlining.commands._remote import NodeSession, open_node
from silverlining.commands._services import data_node
from silverlining.console import Console
from silverlining.errors import SilverError, UsageError
from silverlining.locations import parse_location
from silverlining.node import paths
from silverlining.transport import rsync

REMOTE = "remote:"


def local_dest(dest: str | None, name: str) -> Path:
    """Where a fetched archive goes: DEST, or ``NAME.tar.gz`` in DEST (a directory) or here."""
    if not dest:
        return Path.cwd() / f"{name}.tar.gz"
    path = Path(dest).expanduser()
    return path / f"{name}.tar.gz" if path.is_dir() else path


def size_text(size: int) -> str:
    return f"{size / 1e6:.1f} MB" if size >= 100_000 else f"{size} bytes"


def fetch(session: NodeSession, result: dict, target: Path) -> None:
    """The node's archive (a ``backup`` answer) into ``target``, checked here (0600),
    and the node's copy removed."""
    partial = target.with_name(f".{target.name}.part")
    session.console.step(session.name, f"fetching {size_text(result['size'])}")
    try:
        rsync(result["path"], session.address, str(partial), user=paths.DEPLOY_USER,
              label=session.name, pull=True)
        os.chmod(partial, 0o600)          # the app's data and secrets
        verify(partial)
        os.replace(partial, target)
    except (BackupError, SilverError):
        partial.unlink(missing_ok=True)
        raise
    finally:
        session.send(protocol.BackupDiscard(app=result["app"], token=result["token"]),
                     quiet=True)


def run(console: Console, location: str, dest: str | None, node: str | None) -> int:
    loc = parse_location(location)
    remote = dest[len(REMOTE):] if dest and dest.startswith(REMOTE) else None
    if remote is not None:
        check_name(remote)
    elif dest:
        target = Path(dest).expanduser()
        if not target.is_dir() and target.exists():
            raise UsageError(f"{dest} exists: give a new file name or a directory")
        if not target.is_dir() and not target.parent.is_dir():
            raise UsageError(f"{target.parent} is not a directory")
    session = open_node(console, data_node(loc, node)[0])
    try:
        result = session.send(protocol.Backup(location=str(loc), remote=remote or None),
                              timeout=None)
        if remote is not None:
            console.out(f"{result['app']}: backup {REMOTE}{result['name']} on {session.name} "
                        f"({', '.join(result['services'])}; {size_text(result['size'])})")
            return 0
        target = local_dest(dest, result["name"])
        if target.exists():
            raise UsageError(f"{target} exists: give a new file name")
        fetch(session, result, target)
    finally:
        session.close()
    console.out(f"{result['app']}: backup written to {target} "
                f"({', '.join(result['services'])}; {size_text(result['size'])})")
    return 0
