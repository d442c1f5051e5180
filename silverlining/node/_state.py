"""The node's records: per-app version history, the routing table, and locks.

``APPS/APP/app.json`` lists an app's versions (number, time, user, source,
status) and whether it is disabled; ``ROUTES`` maps each location to the
app version it serves (and the one it served before, for ``activate prev``).
Writers hold the app's lock; the routing table has its own short lock, so
different apps never wait for each other except while nginx reloads.
"""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass, field
from pathlib import Path

from silverlining.errors import SilverError
from silverlining.locations import parse_location
from silverlining.node import paths
from silverlining.node._errors import NodeError
from silverlining.node._util import check_app, version_number
from silverlining.node.base import node_lock, write_atomic

DEFAULT_LOCK_WAIT = 300.0


def app_lock(app: str, wait: float = DEFAULT_LOCK_WAIT):
    """Held by whatever changes an app: its record, its instances, its data."""
    return node_lock(f"app-{check_app(app)}", wait, f"app {app}")


def routing_lock(wait: float = DEFAULT_LOCK_WAIT):
    """Held while the routing table and nginx change (briefly: apps never wait long)."""
    return node_lock("routing", wait, "the node's routing")


def _read_json(path: Path, default: object) -> object:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return default
    except ValueError as exc:
        raise NodeError(f"{path} is corrupt: {exc}") from None


def _write_json(path: Path, data: object, mode: int = 0o644) -> None:
    write_atomic(path, json.dumps(data, indent=1, sort_keys=True) + "\n", mode=mode)


@dataclass
class AppState:
    """One app's record on this node (``APPS/APP/app.json``)."""

    app: str
    versions: dict[str, dict] = field(default_factory=dict)
    disabled: bool = False
    last: int = 0

    @property
    def path(self) -> Path:
        return paths.APPS / self.app / "app.json"

    @classmethod
    def load(cls, app: str) -> "AppState":
        data = _read_json(paths.APPS / check_app(app) / "app.json", {})
        assert isinstance(data, dict)
        return cls(app, data.get("versions", {}), bool(data.get("disabled")),
                   int(data.get("last", 0)))

    @classmethod
    def exists(cls, app: str) -> bool:
        return (paths.APPS / check_app(app) / "app.json").exists()

    def save(self) -> None:
        _write_json(self.path, {"app": self.app, "versions": self.versions,
                                "disabled": self.disabled, "last": self.last}, mode=0o600)

    def get(self, version: str) -> dict:
        if version not in self.versions:
            raise NodeError(f"app {self.app} has no version {version} on this node "
                            f"(has: {', '.join(self.ordered()) or 'none'})")
        return self.versions[version]

    def ordered(self) -> list[str]:
        """Version names, oldest first."""
        return sorted(self.versions, key=version_number)

    def newest_built(self, before: str | None = None) -> str | None:
        """The newest version whose instance directory exists (the hard-link basis)."""
        limit = version_number(before) if before else None
        for version in reversed(self.ordered()):
            if limit is not None and version_number(version) >= limit:
                continue
            if self.versions[version].get("status") in ("ok", "failed") and \
                    instance_dir(self.app, version).is_dir():
                return version
        return None


def instance_dir(app: str, version: str) -> Path:
    return paths.APPS / app / version


def instance_name(app: str, version: str) -> str:
    return f"{app}.{version}"


def load_routes() -> dict[str, dict]:
    """``{location: {"app", "version" (None when deactivated), "prev"}}``."""
    data = _read_json(paths.ROUTES, {})
    assert isinstance(data, dict)
    return data


def served(location: str) -> tuple[str, str]:
    """(app, version) live at ``location`` (a canonical location key)."""
    entry = load_routes().get(location) or {}
    if not entry.get("version"):
        raise NodeError(f"nothing is served at {location} on this node")
    return entry["app"], entry["version"]


def save_routes(routes: dict[str, dict]) -> None:
    _write_json(paths.ROUTES, routes)


def referenced(routes: dict[str, dict], app: str, include_prev: bool = False) -> set[str]:
    """Versions of ``app`` that some location serves (and, optionally, keeps as prev)."""
    used = set()
    for entry in routes.values():
        if entry.get("app") != app:
            continue
        if entry.get("version"):
            used.add(entry["version"])
        if include_prev and entry.get("prev"):
            used.add(entry["prev"])
    return used


def all_apps() -> list[str]:
    if not paths.APPS.is_dir():
        return []
    return sorted(p.name for p in paths.APPS.iterdir() if (p / "app.json").is_file())


def location_key(text: str) -> str:
    """The canonical form of a location (``Host/path``, lowercased host)."""
    try:
        return str(parse_location(text))
    except SilverError as exc:
        raise NodeError(exc.message) from None


def canonical_hostname(app: str, extra_location: str | None = None) -> str:
    """The shortest exact hostname mapped to ``app`` (SILVER_CANONICAL_HOSTNAME)."""
    locations = [loc for loc, e in load_routes().items()
                 if e.get("app") == app and e.get("version")]
    if extra_location:
        locations.append(extra_location)
    hosts = {loc.partition("/")[0] for loc in locations}
    exact = [h for h in hosts if h not in ("*", "not-found", "disabled")
             and not h.startswith((".", "@"))]
    if exact:
        return min(exact, key=lambda h: (len(h), h))
    suffixes = [h[1:] for h in hosts if h.startswith(".")]
    if suffixes:
        return min(suffixes, key=lambda h: (len(h), h))
    return socket.getfqdn()
