"""``disable`` and ``enable``: answer an app's requests with the 503 page, or serve it again.

The flag lives in the app's record; the routing is regenerated and nginx
reloaded at once. Requests from the node itself still reach a disabled app,
so it can be checked or repaired before it is enabled again.
"""

from __future__ import annotations

from silverlining import protocol
from silverlining.node import audit, routing
from silverlining.node._errors import NodeError
from silverlining.node._state import (AppState, app_lock, load_routes, location_key,
                                      routing_lock, served)
from silverlining.node._util import check_app


def disable(call: protocol.Disable) -> protocol.DisableResult:
    return set_disabled(call, True)


def enable(call: protocol.Enable) -> protocol.DisableResult:
    return set_disabled(call, False)


def set_disabled(args: protocol.Disable, disabled: bool) -> protocol.DisableResult:
    if (args.app is None) == (args.location is None):
        raise NodeError("name the app by its location or by app, not both")
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
