"""Dependency layers: an app's declared dependencies, built by the client for this
node's interpreter, stored once and shared read-only by every version using them.

``DEPS/FINGERPRINT`` is root-owned and read-only to apps; a version's
environment names its layer in ``SILVER_DEPS``, which the app loader adds to
``sys.path`` after ``lib/python`` (``.pth`` files work). A version that keeps
its dependencies neither uploads, walks nor links their files: it only names
the layer. ``facts`` is what ``prepare`` tells the client: this interpreter
(so the client builds for it) and which layers are already here.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import sys
import time
from pathlib import Path

from silverlining.node import paths
from silverlining.node._errors import NodeError
from silverlining.node._util import make_dir, run, say

MANIFEST = ".silver-deps.json"
ENV_VAR = "SILVER_DEPS"
_FINGERPRINT_RE = re.compile(r"^[0-9a-f]{32}$")


def target() -> dict[str, str]:
    """This interpreter and platform, as wheels and markers see them. The apps run
    under the same ``python3`` as ``silver-node``."""
    libc, version = platform.libc_ver()
    return {"implementation": sys.implementation.name, "python": platform.python_version(),
            "abi": f"cp{sys.version_info.major}{sys.version_info.minor}"
            if sys.implementation.name == "cpython" else sys.implementation.cache_tag,
            "glibc": version if libc == "glibc" else "", "machine": platform.machine()}


def present() -> list[str]:
    """The layers this node has."""
    try:
        return sorted(n for n in os.listdir(paths.DEPS) if _FINGERPRINT_RE.match(n))
    except FileNotFoundError:
        return []


def facts() -> dict:
    return {"target": target(), "deps": present()}


def check_fingerprint(fingerprint: str) -> str:
    if not _FINGERPRINT_RE.match(fingerprint):
        raise NodeError(f"bad dependency fingerprint {fingerprint!r}")
    return fingerprint


def layer(fingerprint: str) -> Path:
    return paths.DEPS / check_fingerprint(fingerprint)


def install(fingerprint: str, uploaded: Path) -> Path:
    """The layer ``fingerprint``: already here, or copied from the upload (owned by the
    deploy user) as root's own read-only files, then put in place by one rename."""
    final = layer(fingerprint)
    if final.is_dir():
        return final
    if not (uploaded / MANIFEST).is_file():
        raise NodeError(f"dependency set {fingerprint} is neither on this node nor "
                        "uploaded: run silver update again")
    make_dir(paths.DEPS, 0, 0, 0o755)
    work = paths.DEPS / f".{fingerprint}.{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    say(f"installing dependency set {fingerprint}")
    run(["rsync", "-a", "--no-D", "--safe-links", "--chown=0:0", "--chmod=go-w,a+rX",
         f"{uploaded}/", f"{work}/"], what="installing the dependency set")
    os.chmod(work, 0o755)
    try:
        work.rename(final)
    except OSError:                    # another deploy put it there meanwhile
        shutil.rmtree(work, ignore_errors=True)
    shutil.rmtree(uploaded, ignore_errors=True)
    return final


def summary(fingerprint: str) -> dict:
    """What a version records of its layer: shown by ``silver query`` and ``diff``."""
    try:
        manifest = json.loads((layer(fingerprint) / MANIFEST).read_text())
    except (OSError, ValueError):
        manifest = {}
    packages = manifest.get("packages", {})
    return {"fingerprint": fingerprint, "count": len(packages), "packages": packages,
            "target": manifest.get("target")}


def in_use() -> set[str]:
    """Layers some kept version of some app names."""
    from silverlining.node._state import AppState, all_apps

    used = set()
    for app in all_apps():
        for meta in AppState.load(app).versions.values():
            if fp := (meta.get("deps") or {}).get("fingerprint"):
                used.add(fp)
    return used


def prune(dry_run: bool = False, grace: float = 3600) -> list[str]:
    """Remove the layers no kept version uses (``silver clean-node``), except those
    installed within ``grace`` seconds: a deploy still on its way to recording one."""
    used = in_use()
    removed = []
    for name in present():
        try:
            fresh = time.time() - (paths.DEPS / name).stat().st_mtime < grace
        except FileNotFoundError:
            continue
        if name not in used and not fresh:
            removed.append(name)
            if not dry_run:
                shutil.rmtree(paths.DEPS / name, ignore_errors=True)
    return removed
