"""The server files that ``silver setup-node`` pushes, and their version.

The server files are ``server-files/`` (``serverroot/`` mirrored onto the node
by the setup script, and the script itself) plus the node-side Python code
(the parts of the ``silverlining`` package in ``NODE_SHIPPED``). Their hash is
the *server version*: the node records it after a successful setup, and
commands that use a node compare it with their own (``check_node_version``) so
a node set up by an older or newer checkout is caught before it is used with
code that does not match.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import silverlining
from silverlining.errors import SilverError
from silverlining.node import paths

PACKAGE_DIR = Path(silverlining.__file__).resolve().parent
# In a source checkout this is a symlink to ../server-files; in an installed
# wheel it is the copied directory (package data), so one path serves both.
SERVER_FILES_LINK = PACKAGE_DIR / "_server_files"
SCRIPT_NAME = "update-server-script.sh"

# What of the package runs on nodes, by top-level entry: the node side, what it
# imports, and what deployed apps import (``params``, ``secret``). An allow-list, so
# a new client module never ships by accident; standard library only
# (tests/unit/test_serverfiles.py checks every import of these).
NODE_SHIPPED = frozenset({
    "__init__.py", "appconfig.py", "apploader.py", "backups.py", "depset.py", "errors.py",
    "inifile.py", "locations.py", "params.py", "protocol.py", "schedule.py", "secret.py",
    "tlscerts.py",
    "node", "services",
})
_SKIP_NAMES = frozenset({"__pycache__"})
_SKIP_SUFFIXES = (".pyc", ".pyo", "~", ".swp")


def server_files_dir() -> Path:
    """``server-files/`` of this installation; an error if it was not packaged."""
    path = SERVER_FILES_LINK.resolve()
    if not (path / SCRIPT_NAME).is_file() or not (path / "serverroot").is_dir():
        raise SilverError(f"server files not found at {SERVER_FILES_LINK} (expected "
                          f"serverroot/ and {SCRIPT_NAME}): broken silverlining installation")
    return path


def script_text() -> str:
    return (server_files_dir() / SCRIPT_NAME).read_text()


def _walk(root: Path) -> Iterator[Path]:
    """Files under ``root`` in a stable order, editor and bytecode droppings skipped
    (their directories not even entered: every command hashes these files)."""
    if root.is_file():
        yield root
        return
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d not in _SKIP_NAMES]
        found += [os.path.join(folder, f) for f in files if not f.endswith(_SKIP_SUFFIXES)]
    for name in sorted(found):
        if os.path.isfile(name):
            yield Path(name)


def node_code_files() -> Iterator[tuple[str, Path]]:
    """(path relative to the lib dir, local file) of the Python code that ships to nodes."""
    for entry in sorted(NODE_SHIPPED):
        for path in _walk(PACKAGE_DIR / entry):
            yield f"silverlining/{path.relative_to(PACKAGE_DIR).as_posix()}", path


def pushed_files() -> Iterator[tuple[str, Path]]:
    """(path under the node's server-files dir, local file) of everything pushed."""
    root = server_files_dir()
    for path in _walk(root):
        yield path.relative_to(root).as_posix(), path
    for rel, path in node_code_files():
        yield f"lib/{rel}", path


@functools.lru_cache(maxsize=1)
def version() -> str:
    """Hash of every pushed file's path and content (16 hex digits).

    File modes are left out on purpose: the setup script decides them, and a
    checkout and an installed wheel of the same code must agree. Cached: the
    files of a running process are taken as fixed.
    """
    digest = hashlib.sha256()
    for rel, path in sorted(pushed_files()):
        data = path.read_bytes()
        digest.update(f"{rel}\0{len(data)}\0".encode())
        digest.update(data)
    return digest.hexdigest()[:16]


def pushed_digest() -> str:
    """sha256 of the pushed tree's listing as the setup script makes it on the node
    (its ``pushed_digest``): a line per entry, the tree's own directory too ("TYPE MODE
    PATH", the modes ``stage`` gives), and one more per file ("SHA256  ./PATH", as
    sha256sum prints it), sorted bytewise. When the node's copy gives the same, an
    rsync of the server files would change nothing there but owners and times, so
    none is run.
    """
    lines, dirs = [], {""}
    for rel, path in pushed_files():
        lines += [f"f {STAGED_FILE_MODE:o} {rel}",
                  f"{hashlib.sha256(path.read_bytes()).hexdigest()}  ./{rel}"]
        parts = rel.split("/")[:-1]
        dirs.update("/".join(parts[:i]) for i in range(1, len(parts) + 1))
    lines += [f"d {STAGED_DIR_MODE:o} {d}" for d in dirs]
    text = "".join(f"{line}\n" for line in sorted(lines, key=str.encode))
    return hashlib.sha256(text.encode()).hexdigest()


# Every staged path gets this mtime and a fixed mode: rsync (-a, --checksum)
# then reports only content changes, not a new staging copy's timestamps.
_STAGED_MTIME = 946684800  # 2000-01-01
STAGED_FILE_MODE, STAGED_DIR_MODE = 0o644, 0o755


def stage(dest: Path) -> Path:
    """Copy the pushed tree into ``dest`` (made fresh), ready for one rsync --delete."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    for rel, path in pushed_files():
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
    for path in [*dest.rglob("*"), dest]:
        path.chmod(STAGED_DIR_MODE if path.is_dir() else STAGED_FILE_MODE)
        os.utime(path, (_STAGED_MTIME, _STAGED_MTIME), follow_symlinks=False)
    return dest


def check_node_version(ssh, node: str | None = None) -> None:
    """Refuse a node that was never set up, or was set up with other server files.

    ``ssh`` is a ``transport.SSH`` (root or the deploy user: the version file
    is world-readable). Later commands call this before touching the node.
    """
    node = node or ssh.label
    result = ssh.run(["cat", str(paths.SERVER_VERSION)], check=False)
    found = result.stdout.strip() if result.status == 0 else ""
    if not found:
        raise SilverError(f"{node} is not set up: run silver setup-node {node}")
    if found != version():
        raise SilverError(f"{node} was set up with other server files: "
                          f"run silver setup-node {node}")
