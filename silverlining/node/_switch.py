"""Pointing locations at instances: the routing table, nginx, and retiring old instances.

Shared by ``deploy``, ``activate`` and ``deactivate``. The table is only
saved once nginx accepted the new routing; an instance nothing serves any
more is disabled at once and stopped after the drain period, so requests
nginx already sent to it finish.
"""

from __future__ import annotations

from silverlining.node import instances, jobs, routing, status
from silverlining.node._errors import NodeError
from silverlining.node._state import AppState, load_routes, referenced, routing_lock, save_routes
from silverlining.node.base import say


def retire(table: dict[str, dict], candidates: set[tuple[str, str]]) -> None:
    """Stop (after draining) the candidate instances no location serves any more."""
    for app, version in sorted(candidates):
        if version not in referenced(table, app) and instances.has_web(app, version):
            say(f"stopping {app}.{version} in {instances.DRAIN_SECONDS}s "
                "(after requests in flight finish)")
            instances.stop_later(app, version)


def after_routing(app: str) -> None:
    """What follows a change of what an app serves: its jobs, its status records."""
    jobs.sync(app)
    status.publish(app, AppState.load(app).versions)


def switch(app: str, version: str, location: str) -> str | None:
    """Serve ``location`` from ``app`` ``version``; returns the version it served before."""
    with routing_lock():
        table = load_routes()
        old = dict(table.get(location) or {})
        old_app, old_version = old.get("app"), old.get("version")
        if old_app and old_app != app and old_version:
            say(f"{location} was served by {old_app}.{old_version}; it now serves {app}")
        if old_app == app:
            prev = old_version if old_version and old_version != version else old.get("prev")
        else:
            prev = None
        table[location] = {"app": app, "version": version, "prev": prev}
        say(f"switching {location} to {app}.{version}")
        # Enabled first: whenever nginx points at an instance, a reboot starts it.
        if instances.has_web(app, version):
            instances.enable(app, version)
        routing.apply(table)
        save_routes(table)
        if old_app and old_version and (old_app, old_version) != (app, version):
            retire(table, {(old_app, old_version)})
        for affected in sorted({app, old_app} - {None}):
            after_routing(affected)
    return old_version if old_app == app else None


def unroute(locations: list[str], keep_prev: bool) -> list[tuple[str, dict]]:
    """Take locations out of the routing; returns what each served."""
    with routing_lock():
        table = load_routes()
        removed = []
        for location in locations:
            entry = table.get(location)
            if not entry or not entry.get("version"):
                raise NodeError(f"nothing is served at {location} on this node")
            removed.append((location, dict(entry)))
            if keep_prev:
                table[location] = {"app": entry["app"], "version": None,
                                   "prev": entry["version"]}
            else:
                del table[location]
        routing.apply(table)
        save_routes(table)
        retire(table, {(e["app"], e["version"]) for _, e in removed})
        for affected in sorted({e["app"] for _, e in removed}):
            after_routing(affected)
    return removed
