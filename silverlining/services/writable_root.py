"""``service.writable_root``: files the app writes and the web server serves
publicly after ``static/`` (``CONFIG_WRITABLE_ROOT``; a ``HOST/`` subdirectory
there is looked at first for requests to that host)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from silverlining.services.base import Service


class WritableRootService(Service):
    name = "writable_root"
    dev_keys = ("dir",)

    def dev_env(self, app: Any, settings: dict[str, str], state_dir: Path) -> dict[str, str]:
        path = Path(self.setting(settings, "dir") or state_dir / self.name).expanduser()
        path.mkdir(parents=True, exist_ok=True)
        return {"CONFIG_WRITABLE_ROOT": str(path)}

    def env(self, app: Any, node_paths: Any) -> dict[str, str]:
        return {"CONFIG_WRITABLE_ROOT": str(self.data_dir(app, node_paths))}


SERVICE = WritableRootService()
