"""A dependency set as it travels and as it is checked: the same code on both sides.

A set is named by its *fingerprint*: a hash of the target it was built for, of
each distribution's ``RECORD`` (every installed file with its sha256 and size,
as the installer wrote them) and of the sources the node compiles itself
(``build_on_node``). The client sends a set the node lacks as one uncompressed
tar stream of regular files and directories (``TarStream``): thousands of
small files cost rsync a round of per-file work on both ends, one stream
costs a read and a write. The node unpacks it into a directory of its own
(``unpack``) and, before the set becomes a layer, recomputes the fingerprint
from what arrived and checks every file against its ``RECORD`` (``verify``):
a truncated, altered or foreign set is refused. Hashing happens as the bytes
are written, so the check adds no second read.

Standard library only: this module ships to nodes.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import json
import os
import posixpath
import stat
import tarfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

MANIFEST = ".silver-deps.json"      # in each set: its fingerprint, packages and target
SDISTS = ".silver-sdists"           # in a set: the sources of what the node compiles
_CHUNK = 1 << 20
_PYCACHE = "__pycache__"
_BATCH = 1 << 18
_BLOCK = tarfile.BLOCKSIZE


class BadSet(ValueError):
    """A dependency set that must not become a layer; the message says why."""


def target_key(implementation: str, python: str, abi: str, glibc: str, machine: str) -> str:
    """A target as the fingerprint and the build cache see it."""
    return json.dumps([implementation, python, abi, glibc, machine])


def fingerprint(key: str, records: Iterable[tuple[str, bytes]],
                built_on_node: dict[str, dict]) -> str:
    """The set's name: its target (``target_key``), each ``(dist-info name, RECORD
    bytes)`` in name order, and the sha256 of each source the node builds from."""
    digest = hashlib.sha256(key.encode())
    for name, record in records:
        digest.update(name.encode() + b"\0" + record)
    for name, built in sorted(built_on_node.items()):
        digest.update(f"built on the node: {name} {built['sha256']}".encode())
    return digest.hexdigest()[:32]


def _record_hash(digest: bytes) -> str:
    """A sha256 as RECORD writes it."""
    return "sha256=" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


# --- the client's side ------------------------------------------------------------

class TarStream:
    """The set in ``site`` as a tar stream, made as it is read: ``read1`` is what the
    transport feeds a command's stdin from, so nothing is written to disk first and
    a node that stops reading stops the reading of files here. The files in ``skip``
    are left out: the node takes them from a layer it has (``shared_files``)."""

    def __init__(self, site: Path, skip: frozenset[str] = frozenset()) -> None:
        self._chunks = _tar_chunks(site, skip)
        self.sent = 0

    def read1(self, _size: int = -1) -> bytes:
        """The next ``_BATCH`` bytes or so (b"" at the end): thousands of small files as
        a write each would cost ssh a packet and a wake-up each."""
        parts, size = [], 0
        while size < _BATCH and (chunk := next(self._chunks, b"")):
            parts.append(chunk)
            size += len(chunk)
        self.sent += size
        return b"".join(parts)


def _tar_chunks(site: Path, skip: frozenset[str]) -> Iterator[bytes]:
    """The tar of ``site``, without the files named in ``skip`` (the node has them)."""
    for rel, path, st in _walk(site):
        if rel in skip:
            continue
        info = tarfile.TarInfo(rel)
        info.mtime = int(st.st_mtime)
        if stat.S_ISDIR(st.st_mode):
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            yield info.tobuf(tarfile.GNU_FORMAT)
            continue
        info.size = st.st_size
        info.mode = 0o755 if st.st_mode & 0o111 else 0o644
        yield info.tobuf(tarfile.GNU_FORMAT)
        left = st.st_size
        with open(path, "rb") as fh:
            while left > 0 and (chunk := fh.read(min(_CHUNK, left))):
                left -= len(chunk)
                yield chunk
        if left:
            raise BadSet(f"{path} changed while it was sent")
        if st.st_size % _BLOCK:
            yield b"\0" * (_BLOCK - st.st_size % _BLOCK)
    yield b"\0" * (2 * _BLOCK)


def _walk(site: Path) -> Iterator[tuple[str, str, os.stat_result]]:
    """Every directory and file under ``site``, parents first, in name order; anything
    else (a link, a FIFO) is refused: the node would refuse it too."""
    stack = [("", os.fspath(site))]
    while stack:
        prefix, folder = stack.pop()
        entries = sorted(os.scandir(folder), key=lambda e: e.name, reverse=True)
        for entry in reversed(entries):
            rel = prefix + entry.name
            st = entry.stat(follow_symlinks=False)
            if not (stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode)):
                raise BadSet(f"{entry.path} is neither a file nor a directory")
            yield rel, entry.path, st
        stack += [(prefix + e.name + "/", e.path) for e in entries
                  if e.is_dir(follow_symlinks=False)]


def records(site: Path) -> dict[str, tuple[str, str]]:
    """Every file the RECORDs in ``site`` list with a sha256: path -> (hash, size)."""
    found: dict[str, tuple[str, str]] = {}
    for dist in sorted(site.glob("*.dist-info")):
        try:
            text = (dist / "RECORD").read_text(errors="replace")
        except OSError:
            continue
        for row in csv.reader(text.splitlines()):
            if len(row) < 3 or not row[1].startswith("sha256="):
                continue
            path = posixpath.normpath(row[0])
            if not (path.startswith("/") or path == ".." or path.startswith("../")):
                found.setdefault(path, (row[1], row[2]))
    return found


def shared_files(site: Path, base: Path) -> frozenset[str]:
    """The files of the set in ``site`` that the set in ``base`` holds the same (path,
    sha256, size, executable or not, by both RECORDs and the files here): what a
    node with ``base``'s layer need not be sent. None from a set that has packages
    built on the node, or in a ``__pycache__``."""
    if any((s / SDISTS).exists() for s in (site, base)):
        return frozenset()
    theirs = records(base)
    shared = set()
    for path, row in records(site).items():
        if theirs.get(path) != row or _PYCACHE in path.split("/"):
            continue
        try:
            if (os.stat(site / path).st_mode ^ os.stat(base / path).st_mode) & 0o111:
                continue
        except OSError:
            continue
        shared.add(path)
    return frozenset(shared)


# --- the node's side --------------------------------------------------------------

def _member_path(name: str) -> str:
    """A member's path inside the set, or BadSet: relative, no ``..``, not empty."""
    path = posixpath.normpath(name)
    if name.startswith("/") or path in (".", "") or path == ".." or path.startswith("../"):
        raise BadSet(f"the set names {name!r}: not a path inside it")
    return path


def _make_dir(path: str, made: set[str]) -> None:
    """``path`` and its missing parents as ``0755`` directories (the umask is ``022``
    while ``unpack`` runs)."""
    if path in made:
        return
    _make_dir(posixpath.dirname(path), made)
    try:
        os.mkdir(path, 0o755)
    except FileExistsError:
        raise BadSet(f"the set names {posixpath.basename(path)} as a file and as a "
                     "directory") from None
    made.add(path)


def unpack(stream: BinaryIO, dest: Path, written: Callable[[str], None] | None = None,
           reuse: Callable[[str, str, str, int, int], bool] | None = None
           ) -> dict[str, tuple[str, int]]:
    """Write the tar ``stream`` into ``dest`` (an empty directory only its caller can
    write to): directories and regular files only, ``0755``/``0644``, owned by the
    caller. Returns each file's RECORD-style sha256 and size; ``written`` is called
    with the path of each file once it is complete (the node byte-compiles as the
    set arrives). ``reuse(path, target, sha256, size, mode)``, asked about each file
    up to ``_CHUNK`` once its bytes are in hand, may make ``target`` itself (the node
    links the same file of another of its sets) and say so: it is then not written,
    nor handed to ``written``. Anything else in the stream (links, devices), a path
    leaving ``dest`` or a name given twice is refused, and so is a stream that ends
    early. What the set brings in ``__pycache__`` directories is checked but not
    written: the node makes its own for its Python, and a shipped one could only be
    stale."""
    files: dict[str, tuple[str, int]] = {}
    top = os.fspath(dest)
    made = {top}                # directories known to exist: one mkdir each at most
    umask = os.umask(0o022)
    try:
        with tarfile.open(fileobj=stream, mode="r|") as tar:
            for member in tar:
                if member.isdir() and posixpath.normpath(member.name) == ".":
                    continue            # the set's own top (``tar -C SET -c .``)
                path = _member_path(member.name)
                target = f"{top}/{path}"
                cache = _PYCACHE in path.split("/")
                if member.isdir():
                    if not cache:
                        _make_dir(target, made)
                    continue
                if not member.isreg():
                    raise BadSet(f"{member.name} in the set is not a regular file or a "
                                 "directory")
                if path in files:
                    raise BadSet(f"the set names {path} twice")
                source = tar.extractfile(member)
                assert source is not None
                digest = hashlib.sha256()
                mode = 0o755 if member.mode & 0o111 else 0o644
                if cache:
                    while chunk := source.read(_CHUNK):
                        digest.update(chunk)
                    files[path] = (_record_hash(digest.digest()), member.size)
                    continue
                _make_dir(posixpath.dirname(target), made)
                whole = source.read() if reuse is not None and member.size <= _CHUNK else None
                if whole is not None:
                    digest.update(whole)
                    files[path] = (_record_hash(digest.digest()), member.size)
                    if reuse(path, target, files[path][0], member.size, mode):
                        continue
                fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
                try:
                    if whole is not None:
                        os.write(fd, whole)
                    while chunk := source.read(_CHUNK):
                        digest.update(chunk)
                        os.write(fd, chunk)
                finally:
                    os.close(fd)
                files[path] = (_record_hash(digest.digest()), member.size)
                if written is not None:
                    written(target)
    except FileExistsError as exc:
        raise BadSet(f"the set names {exc.filename} twice") from None
    except tarfile.TarError as exc:
        raise BadSet(f"the set did not arrive whole ({exc})") from None
    finally:
        os.umask(umask)
    return files


def verify(site: Path, files: dict[str, tuple[str, int]], key: str) -> str:
    """The fingerprint of the set unpacked in ``site`` for target ``key``, once every
    file is the one a RECORD lists (same sha256 and size), every listed file is
    there, and nothing else is but the manifest and the sources the node builds (each
    with the sha256 the manifest gives). Raises BadSet otherwise."""
    try:
        manifest = json.loads((site / MANIFEST).read_text())
        built = manifest.get("build_on_node") or {}
    except (OSError, ValueError, AttributeError):
        raise BadSet("the set has no readable manifest") from None
    records: list[tuple[str, bytes]] = []
    unlisted = set(files) - {MANIFEST}
    for dist in sorted(n for n in os.listdir(site) if n.endswith(".dist-info")):
        try:
            record = (site / dist / "RECORD").read_bytes()
        except OSError:
            record = b""
        records.append((dist, record))
        for row in csv.reader(record.decode("utf-8", "replace").splitlines()):
            if not row or row[0].startswith(("/", "../")):
                continue                # written outside the set: not part of it
            path = posixpath.normpath(row[0])
            unlisted.discard(path)
            want = row[1] if len(row) > 1 else ""
            if not want.startswith("sha256="):
                continue                # RECORD itself (and other hashes: not checked)
            if path not in files:
                raise BadSet(f"{path} is missing from the set")
            digest, size = files[path]
            if digest != want or (len(row) > 2 and row[2] and row[2] != str(size)):
                raise BadSet(f"{path} is not the file its RECORD ({dist}) names")
    for name, info in built.items():
        path = f"{SDISTS}/{info.get('sdist', '')}"
        digest = files.get(path, ("sha256=", 0))[0].removeprefix("sha256=")
        if base64.urlsafe_b64decode(digest + "==").hex() != info.get("sha256"):
            raise BadSet(f"the source of {name} is missing from the set or altered")
        unlisted.discard(path)
    if unlisted:
        raise BadSet(f"{sorted(unlisted)[0]} is in the set but in no RECORD")
    return fingerprint(key, records, built)
