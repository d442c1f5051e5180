"""``service.files``: a persistent writable directory per app (``CONFIG_FILES``).

On a node it is ``DATA/APP/files``, owned by the app's user. Its backup is a
tar of the directory; a restore unpacks it as the app's user, so an archive
can only ever write where the app itself could.
"""

from __future__ import annotations

import pwd
from pathlib import Path
from typing import Any

from silverlining.node.base import empty_dir, make_dir, run, say
from silverlining.services.base import Service


class DirectoryService(Service):
    """A directory of the app's own under ``DATA/APP/NAME``."""

    dev_keys = ("dir",)
    variable = ""

    def group(self, app: Any, node_paths: Any) -> int:
        """The directory's group: the app's own."""
        return pwd.getpwnam(node_paths.APP_USER_PREFIX + app.app_name).pw_gid

    def dev_env(self, app: Any, settings: dict[str, str], state_dir: Path) -> dict[str, str]:
        path = Path(self.setting(settings, "dir") or state_dir / self.name).expanduser()
        path.mkdir(parents=True, exist_ok=True)
        return {self.variable: str(path)}

    def env(self, app: Any, node_paths: Any) -> dict[str, str]:
        return {self.variable: str(self.data_dir(app, node_paths))}

    def install(self, app: Any, node_paths: Any) -> None:
        user = pwd.getpwnam(node_paths.APP_USER_PREFIX + app.app_name)
        make_dir(self.data_dir(app, node_paths), user.pw_uid, self.group(app, node_paths),
                 0o2750)

    def clear(self, app: Any, node_paths: Any) -> None:
        say(f"{self.name}: emptying {self.data_dir(app, node_paths)}")
        empty_dir(self.data_dir(app, node_paths))
        self.install(app, node_paths)

    def backup(self, app: Any, node_paths: Any, dest_dir: Path) -> None:
        self.install(app, node_paths)
        run(["tar", "--create", "--file", str(dest_dir / "files.tar"), "--numeric-owner",
                 "--directory", str(self.data_dir(app, node_paths)), "."], what="tar")

    def restore(self, app: Any, node_paths: Any, src_dir: Path) -> None:
        self.clear(app, node_paths)
        with open(src_dir / "files.tar", "rb") as archive:
            run(["tar", "--extract", "--file", "-", "--no-same-owner",
                     "--directory", str(self.data_dir(app, node_paths))],
                    stdin=archive, user=node_paths.APP_USER_PREFIX + app.app_name,
                    what="unpacking files")


class FilesService(DirectoryService):
    name = "files"
    variable = "CONFIG_FILES"


SERVICE = FilesService()
