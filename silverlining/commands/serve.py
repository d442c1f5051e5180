"""``silver serve DIR``: the app on this machine, as close to a node as we can."""

from __future__ import annotations

from pathlib import Path

from silverlining.console import Console
from silverlining.devserver import reloader


def run(console: Console, app_dir: str, host: str, port: int, config_dir: str | None) -> int:
    try:
        reloader.serve(Path(app_dir), host, port, config_dir, console)
    except KeyboardInterrupt:
        console.info("stopped")
    return 0
