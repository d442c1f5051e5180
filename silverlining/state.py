"""Where silverlining keeps its own files on the developer's machine.

``SILVER_HOME`` (default ``~/.silverlining``) holds the node registry, the
project's own known_hosts and the local provider's images and nodes;
``SILVER_CONFIG`` (default ``~/.silverlining.conf``) is the user config file.
Tests set both so they never touch the real home.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from silverlining.errors import SilverError
from silverlining.node.base import flock, write_atomic


def state_dir() -> Path:
    path = Path(os.environ.get("SILVER_HOME") or Path.home() / ".silverlining")
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise SilverError(f"cannot use {path} as silverlining's state directory "
                          f"(SILVER_HOME): {exc.strerror}") from None
    return path


def config_path() -> Path:
    return Path(os.environ.get("SILVER_CONFIG") or Path.home() / ".silverlining.conf")


def known_hosts_path() -> Path:
    return state_dir() / "known_hosts"


def locked(path: Path):
    """An exclusive flock on ``path`` (created), for read-modify-write of state files."""
    return flock(path, None, str(path))


def write_json_atomic(path: Path, data: object) -> None:
    write_atomic(path, json.dumps(data, indent=2, sort_keys=True) + "\n", mode=0o600,
                 uid=None, gid=None)


class NodeRegistry:
    """Nodes we created or set up: name -> {address, provider, ...} in ``nodes.json``."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or state_dir() / "nodes.json"

    def all(self) -> dict[str, dict]:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except ValueError as exc:
            raise SilverError(f"{self.path} is corrupt ({exc}): fix it or move it away "
                              "(it lists the nodes you created)") from None
        if not isinstance(data, dict):
            raise SilverError(f"{self.path} is corrupt (not a JSON object): fix it or move "
                              "it away (it lists the nodes you created)")
        return data

    def get(self, name: str) -> dict | None:
        return self.all().get(name)

    def put(self, name: str, **info: object) -> None:
        with locked(self.path.with_suffix(".lock")):
            data = self.all()
            data.setdefault(name, {}).update(info)
            write_json_atomic(self.path, data)

    def add_location(self, name: str, location: str) -> None:
        """Remember that ``name`` serves ``location`` (for shell completion); only for
        nodes already registered, so a DNS name never becomes a half-made entry."""
        with locked(self.path.with_suffix(".lock")):
            data = self.all()
            entry = data.get(name)
            if entry is None or location in entry.get("locations", []):
                return
            entry["locations"] = sorted({*entry.get("locations", []), location})
            write_json_atomic(self.path, data)

    def remove(self, name: str) -> bool:
        with locked(self.path.with_suffix(".lock")):
            data = self.all()
            found = data.pop(name, None) is not None
            write_json_atomic(self.path, data)
            return found
