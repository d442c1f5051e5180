"""Polling file watcher for the reloader: cheap, portable, no dependencies."""

from __future__ import annotations

import os
from pathlib import Path

from silverlining.appfiles import Ignore, read_silverignore

WATCHED_SUFFIXES = (".py", ".pth", ".egg-link")
# Never code: large trees not worth scanning twice a second.
PRUNE = ("/static/", "node_modules/", "/silver-logs/")


class Watcher:
    """Snapshots of the mtimes of the app's code, app.ini, the runner and extra files."""

    def __init__(self, app_dir: Path, extra: list[Path]) -> None:
        self.app_dir = app_dir
        self.extra = extra
        self.ignore = Ignore([*read_silverignore(app_dir), *PRUNE])

    def snapshot(self) -> dict[str, int]:
        found: dict[str, int] = {}
        root = str(self.app_dir)
        for dirpath, dirnames, filenames in os.walk(root):
            rel = os.path.relpath(dirpath, root)
            prefix = "" if rel == "." else rel.replace(os.sep, "/") + "/"
            dirnames[:] = [d for d in dirnames if not self.ignore.matches(prefix + d, True)]
            for name in filenames:
                if name.endswith(WATCHED_SUFFIXES):
                    self._stat(os.path.join(dirpath, name), found)
        for path in [self.app_dir / "app.ini", *self.extra]:
            self._stat(str(path), found)
        return found

    @staticmethod
    def _stat(path: str, found: dict[str, int]) -> None:
        try:
            found[path] = os.stat(path).st_mtime_ns
        except OSError:
            pass


def changed(old: dict[str, int], new: dict[str, int]) -> list[str]:
    """Paths added, removed or modified between two snapshots."""
    return sorted(p for p in old.keys() | new.keys() if old.get(p) != new.get(p))
