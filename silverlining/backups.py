"""Backup archives of an app's service data: writing them and checking them.

An archive is a ``.tar.gz`` whose first member is ``manifest.json`` (app,
version, time, services, and the size and sha256 of every other member);
each other member is a part ``SERVICE/FILE`` a service's ``backup`` wrote.
Stdlib only: the node writes archives, and both the CLI (before uploading)
and the node (before touching any data) verify them with ``verify``.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import shutil
import tarfile
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

from silverlining.errors import SilverError

FORMAT = 1
MANIFEST = "manifest.json"
PART_RE = re.compile(r"^([a-z_]+)/([A-Za-z0-9][A-Za-z0-9._-]{0,100})$")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,100}$")
CHUNK = 1 << 20


class BackupError(SilverError):
    """An archive that is not a complete, intact backup."""


@dataclass
class Manifest:
    app: str
    version: str
    time: str
    services: list[str]
    parts: dict[str, dict]

    def to_json(self) -> bytes:
        return json.dumps({"format": FORMAT, "app": self.app, "version": self.version,
                           "time": self.time, "services": self.services,
                           "parts": self.parts}, indent=1, sort_keys=True).encode()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def write_archive(staging: Path, dest: Path, app: str, version: str,
                  services: list[str]) -> Manifest:
    """Pack the parts under ``staging/SERVICE/`` with their manifest into ``dest``."""
    parts = {}
    for service in services:
        for path in sorted((staging / service).iterdir()):
            name = f"{service}/{path.name}"
            if not path.is_file() or not PART_RE.match(name):
                raise SilverError(f"unexpected backup part {name}")
            parts[name] = {"size": path.stat().st_size, "sha256": sha256_file(path)}
    manifest = Manifest(app, version, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                        services, parts)
    data = manifest.to_json()
    with tarfile.open(dest, "w:gz", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(MANIFEST)
        info.size, info.mode, info.mtime = len(data), 0o600, int(time.time())
        tar.addfile(info, io.BytesIO(data))
        for name in parts:
            info = tar.gettarinfo(str(staging / name), arcname=name)
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            with open(staging / name, "rb") as fh:
                tar.addfile(info, fh)
    return manifest


def _manifest(raw: bytes, where: str) -> Manifest:
    try:
        data = json.loads(raw)
        manifest = Manifest(str(data["app"]), str(data["version"]), str(data["time"]),
                            [str(s) for s in data["services"]], dict(data["parts"]))
        if data.get("format") != FORMAT:
            raise BackupError(f"{where}: backup format {data.get('format')!r} is not "
                              f"{FORMAT}")
    except (ValueError, KeyError, TypeError) as exc:
        raise BackupError(f"{where}: bad manifest ({exc})") from None
    for name, part in manifest.parts.items():
        m = PART_RE.match(name)
        if not m or m.group(1) not in manifest.services:
            raise BackupError(f"{where}: bad part name {name!r} in the manifest")
        if not isinstance(part, dict) or not isinstance(part.get("size"), int) \
                or not re.fullmatch(r"[0-9a-f]{64}", str(part.get("sha256"))):
            raise BackupError(f"{where}: bad manifest entry for {name}")
    return manifest


def verify(archive: Path, extract_to: Path | None = None) -> Manifest:
    """Check every part against the manifest (size, sha256, nothing missing or
    extra) and return the manifest; with ``extract_to``, also write the parts
    there (``SERVICE/FILE``). Nothing is trusted before the whole archive passed:
    the caller uses the extracted files only if this returns."""
    where = str(archive)
    try:
        with tarfile.open(archive, "r:gz") as tar:
            first = tar.next()
            if first is None or first.name != MANIFEST or not first.isfile():
                raise BackupError(f"{where}: not a silverlining backup (no {MANIFEST} first)")
            fh = tar.extractfile(first)
            assert fh is not None
            manifest = _manifest(fh.read(1 << 20), where)
            seen = set()
            while (member := tar.next()) is not None:
                name = member.name
                if name not in manifest.parts or name in seen or not member.isfile():
                    raise BackupError(f"{where}: unexpected member {name!r}")
                seen.add(name)
                expected = manifest.parts[name]
                digest, size = hashlib.sha256(), 0
                src = tar.extractfile(member)
                assert src is not None
                out = None
                if extract_to is not None:
                    target = extract_to / name
                    target.parent.mkdir(mode=0o700, exist_ok=True)
                    out = open(target, "xb")
                try:
                    while chunk := src.read(CHUNK):
                        digest.update(chunk)
                        size += len(chunk)
                        if out is not None:
                            out.write(chunk)
                finally:
                    if out is not None:
                        out.close()
                if size != expected["size"] or digest.hexdigest() != expected["sha256"]:
                    raise BackupError(f"{where}: {name} is corrupted (checksum mismatch)")
    except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        raise BackupError(f"{where}: damaged archive ({exc})") from None
    missing = sorted(set(manifest.parts) - seen)
    if missing:
        raise BackupError(f"{where}: parts missing: {', '.join(missing)}")
    return manifest


def check_name(name: str) -> str:
    """A ``remote:NAME`` backup name: a plain file name, no path."""
    if not NAME_RE.match(name) or name.endswith(".tar.gz"):
        raise SilverError(f"bad backup name {name!r}: use letters, digits, '.', '_', '-' "
                          "(without .tar.gz)")
    return name


def default_name(app: str) -> str:
    return f"{app}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}"


def remove_tree(path: Path) -> None:
    """Remove a staging directory (dumps inside: never left behind)."""
    if path.exists():
        shutil.rmtree(path)

