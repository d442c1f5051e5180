"""``disable`` and ``enable``: answer an app's requests with the 503 page, or serve it again.

The flag lives in the app's record; the routing is regenerated and nginx
reloaded at once. Requests from the node itself still reach a disabled app,
so it can be checked or repaired before it is enabled again.
"""

from __future__ import annotations

from silverlining.node import audit, routing
from silverlining.node._errors import NodeError
from silverlining.node._state import (AppState, app_lock, load_routes, location_key,
                                      routing_lock, served)
from silverlining.node._util import check_app


def set_disabled(args, disabled: bool) -> dict:
    if args.app:
        app = check_app(args.app)
        if not AppState.exists(app):
            raise NodeError(f"no app {app} on this node")
    else:
        app, _ = served(location_key(args.location))
    with app_lock(app, args.lock_wait):
        state = AppState.load(app)
        changed = state.disabled != disabled
        state.disabled = disabled
        state.save()
        with routing_lock():
            routing.apply(load_routes())
        if changed:
            audit.record("disable" if disabled else "enable", app, who=args.who)
    return {"app": app, "disabled": disabled, "changed": changed}


def register(subparsers) -> None:
    for name, disabled in (("disable", True), ("enable", False)):
        p = subparsers.add_parser(name, help=f"{name} an app (by location or --app)")
        where = p.add_mutually_exclusive_group(required=True)
        where.add_argument("location", nargs="?")
        where.add_argument("--app")
        p.add_argument("--who")
        p.add_argument("--lock-wait", type=float, default=300.0)
        p.set_defaults(handler=lambda args, d=disabled: set_disabled(args, d))
