"""``silver diff APP_DIR [LOCATION]``: what an update would change, as a unified diff.

The node sends a sha256 of every file of the live version; only files whose
hash differs from the local copy (with the same ``.silverignore`` rules as an
upload) are fetched and compared, so an unchanged app costs one round trip.
Declared dependencies are compared as package versions: the live version's
set against what the local declaration builds for the node's Python.
"""

from __future__ import annotations

import base64
import difflib
from dataclasses import dataclass
from pathlib import Path

from silverlining import appfiles, deps, protocol
from silverlining.appconfig import AppConfig
from silverlining.commands._remote import node_for, open_node
from silverlining.console import Console
from silverlining.errors import SilverError, UsageError
from silverlining.locations import parse_location
from silverlining.node.live import file_digest


@dataclass
class Changes:
    changed: list[str]
    added: list[str]        # only in the local app
    removed: list[str]      # only on the node

    def __bool__(self) -> bool:
        return bool(self.changed or self.added or self.removed)


def compare(local: dict[str, str], remote: dict[str, str]) -> Changes:
    return Changes(changed=sorted(p for p in local.keys() & remote.keys() if local[p] != remote[p]),
                   added=sorted(local.keys() - remote.keys()),
                   removed=sorted(remote.keys() - local.keys()))


def _text(data: bytes | None) -> list[str] | None:
    """Lines of a text file; None for binary (or too big to fetch)."""
    if data is None or b"\0" in data:
        return None
    try:
        return data.decode("utf-8").splitlines(keepends=True)
    except UnicodeDecodeError:
        return None


def file_diff(path: str, old: bytes | None, new: bytes | None, old_label: str,
              new_label: str, old_exists: bool = True, new_exists: bool = True) -> list[str]:
    """A unified diff of one file (``Binary files ... differ`` when either is not text)."""
    a = f"{old_label}/{path}" if old_exists else "/dev/null"
    b = f"{new_label}/{path}" if new_exists else "/dev/null"
    old_lines = _text(old) if old_exists else []
    new_lines = _text(new) if new_exists else []
    if old_lines is None or new_lines is None:
        return [f"Binary files {a} and {b} differ\n"]
    out = list(difflib.unified_diff(old_lines, new_lines, a, b))
    return [line if line.endswith("\n") else line + "\n\\ No newline at end of file\n"
            for line in out]


def local_manifest(app_dir: Path, console: Console) -> dict[str, str]:
    """sha256 of each file an upload would send (special files are skipped, as there)."""
    scan = appfiles.scan_app_files(app_dir, appfiles.Ignore(deps.upload_excludes(app_dir)[1]))
    for rel in scan.special:
        console.warn(f"skipping {app_dir / rel}: not a regular file (FIFO, socket or device)")
    return {rel: file_digest(str(app_dir / rel)) for rel in scan.files}


def run(console: Console, app_dir: str, location: str | None, node: str | None) -> int:
    """1 when there are differences, 0 when none; any error exits 2 (diff(1)'s
    convention), so a script can tell "changed" from "could not compare"."""
    try:
        return _diff(console, app_dir, location, node)
    except SilverError as exc:
        exc.exit_code = 2
        raise


def _diff(console: Console, app_dir: str, location: str | None, node: str | None) -> int:
    config = AppConfig.load(app_dir)
    text = location or config.default_location
    if not text:
        raise UsageError(f"no location: give LOCATION (HOST[/PATH]) or set default_location "
                         f"in {config.ini_path}")
    loc = parse_location(text)
    session = open_node(console, node_for(loc, node))
    try:
        live = session.send(protocol.Manifest(location=str(loc)), quiet=True)
        changes = compare(local_manifest(config.app_dir, console), live["files"])
        wanted = changes.changed + changes.removed
        fetched = session.send(protocol.Cat(app=live["app"], version=live["version"],
                                            paths=tuple(wanted)),
                               quiet=True)["files"] if wanted else {}
    finally:
        session.close()
    label = f"{live['app']}.{live['version']}"
    dep_lines = dependency_changes(config, live, session.name)
    if live["app"] != config.app_name:
        console.warn(f"{loc} serves the app {live['app']}, not {config.app_name}")
    remote = {p: (base64.b64decode(v) if v is not None else None) for p, v in fetched.items()}
    for path in sorted(changes.changed + changes.added + changes.removed):
        local = None if path in changes.removed else (config.app_dir / path).read_bytes()
        for line in file_diff(path, remote.get(path), local, label, "local",
                              old_exists=path not in changes.added,
                              new_exists=path not in changes.removed):
            console.out(line.rstrip("\n"))
    if dep_lines:
        console.out(f"dependencies ({label} -> local, for {session.name}):")
        for line in dep_lines:
            console.out(f"  {line}")
    if changes or dep_lines:
        console.info(f"{len(dep_lines)} dependencies changed, {len(changes.changed)} changed, {len(changes.added)} only here, "
                     f"{len(changes.removed)} only on {session.name} ({label} at {loc})")
    else:
        console.info(f"no differences: {loc} on {session.name} serves {label}, "
                     f"the same as {config.app_dir}")
    return 1 if changes or dep_lines else 0


def dependency_changes(config: AppConfig, live: dict, node: str) -> list[str]:
    """The package version changes an update would bring (built for the node's Python,
    from the local cache when built before)."""
    decl = deps.declared(config.app_dir, config.build_on_node)
    before = (live.get("deps") or {}).get("packages", {})
    if decl is None or decl.empty or not live.get("target"):
        return deps.package_changes(before, {})
    target = deps.Target.from_node(live["target"])
    build = deps.cached(decl, target) or deps.build(decl, target, node)
    return deps.package_changes(before, build.packages)
