"""``service.files``: a persistent writable directory per app (``CONFIG_FILES``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from silverlining.services.base import Service


class FilesService(Service):
    name = "files"
    dev_keys = ("dir",)

    def dev_env(self, app: Any, settings: dict[str, str], state_dir: Path) -> dict[str, str]:
        path = Path(self.setting(settings, "dir") or state_dir / self.name).expanduser()
        path.mkdir(parents=True, exist_ok=True)
        return {"CONFIG_FILES": str(path)}

    def env(self, app: Any, node_paths: Any) -> dict[str, str]:
        return {"CONFIG_FILES": str(self.data_dir(app, node_paths))}


SERVICE = FilesService()
