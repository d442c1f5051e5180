"""Disk: what each app takes (``silver query``), and room for a deploy before it starts.

A deploy needs room for the upload and for the instance built from it (hard
links to the previous version make that less, never more), and the node needs
some left over for the databases and logs that keep growing meanwhile. When
that is not there, ``prepare`` refuses before anything is reserved or sent:
the live version keeps serving and no app's data is touched.
"""

from __future__ import annotations

import os
from pathlib import Path

from silverlining.node import paths
from silverlining.node._errors import NodeError

MB = 1 << 20
SPARE_MIN = 100 * MB        # left free after a deploy, at least
SPARE_SHARE = 0.02          # or this share of the filesystem, whichever is more


def tree_size(root: Path, seen: set[tuple[int, int]] | None = None) -> int:
    """Bytes on disk under ``root`` (no links followed); an inode in ``seen`` (a hard
    link to a file counted already) is not counted again."""
    seen = set() if seen is None else seen
    total = 0
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            try:
                st = os.lstat(os.path.join(dirpath, name))
            except OSError:
                continue
            if (st.st_dev, st.st_ino) in seen:
                continue
            if st.st_nlink > 1:
                seen.add((st.st_dev, st.st_ino))
            total += st.st_blocks * 512
    return total


def app_sizes(app: str, versions: list[str]) -> dict:
    """The app's files data (``DATA/APP``) and each version's instance: a version
    counts only what it does not share (by hard link) with an older one."""
    from silverlining.node._state import instance_dir

    seen: set[tuple[int, int]] = set()
    sizes = {v: tree_size(instance_dir(app, v), seen) for v in versions
             if instance_dir(app, v).is_dir()}
    return {"data": tree_size(paths.DATA / app) if (paths.DATA / app).is_dir() else 0,
            "versions": sizes}


def check_room(app: str, size: int) -> None:
    """Refuse, in one line, a deploy of ``size`` bytes the disk cannot hold."""
    paths.UPLOADS.mkdir(parents=True, exist_ok=True)
    st = os.statvfs(paths.UPLOADS)
    free = st.f_bavail * st.f_frsize
    spare = max(SPARE_MIN, int(st.f_blocks * st.f_frsize * SPARE_SHARE))
    need = 2 * size + spare
    if free < need:
        raise NodeError(f"not enough disk space to deploy {app}: {free // MB} MB free, "
                        f"{need // MB} MB needed ({size // MB} MB uploaded and built, "
                        f"{spare // MB} MB to spare); nothing was changed and the live "
                        "version keeps serving (silver clean-node removes old versions)")
