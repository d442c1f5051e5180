"""Before an upload: ``info`` (the node and an app's parameters), ``reserve`` and ``prepare``.

``reserve`` allocates the next version number of an app (under the app's
lock) and an upload directory owned by the deploy user, pre-seeded by
``--link-dest`` from the previous upload so only changed files cross the
network. Each upload has its own directory, so two uploads never collide.
"""

from __future__ import annotations

import platform
import pwd
import shutil
import socket
import sys
import time

from silverlining import __version__, protocol
from silverlining.node import deps, haproxy, params, paths
from silverlining.node._errors import NodeError
from silverlining.node._state import AppState, app_lock, load_routes
from silverlining.node._util import check_app, version_number
from silverlining.node.base import listening, make_dir
from silverlining.node.instances import has_web, socket_path
from silverlining.node.disk import check_room


def info(call: protocol.Info) -> protocol.InfoResult:
    return node_info(call.app)


def node_info(app: str | None) -> protocol.InfoResult:
    """The node's Python and platform; with an app, the names of its stored parameters
    (so the CLI can refuse a missing one before uploading anything)."""
    result = {"python": f"{sys.version_info.major}.{sys.version_info.minor}",
              "python_full": platform.python_version(), "machine": platform.machine(),
              "hostname": socket.getfqdn(), "silverlining": __version__}
    if app:
        result.update(deps.facts())
        result["params_set"] = sorted(params.load(check_app(app)))
    return result


def prepare(call: protocol.Prepare) -> protocol.PrepareResult:
    """Everything ``silver update`` asks before uploading, in one round trip: the
    node's Python, which of the app's parameters it lacks, whether the live version
    already is this upload, and else a reserved version.

    Nothing is reserved when the answer stops the deploy (missing parameters, nothing
    changed), so such an answer leaves no trace on the node."""
    result: protocol.PrepareResult = {**node_info(call.app)}
    missing = sorted(set(call.needs) - set(result["params_set"]))
    if missing:
        return {**result, "missing": missing}
    if call.fingerprint and call.location and \
            (live := unchanged(call.app, call.location, call.fingerprint)):
        return {**result, "unchanged": live}
    if call.size is not None:
        check_room(call.app, call.size)
    return {**result, **reserve(call)}


def unchanged(app: str, location: str, fingerprint: str) -> str | None:
    """The version live at ``location`` when it was deployed from exactly these files
    (same ``fingerprint``) and its web instance still serves: redeploying it would change
    nothing. ``location`` is canonical (the CLI sends ``str(Location)``)."""
    entry = load_routes().get(location) or {}
    live = entry.get("version")
    if entry.get("app") != app or not live:
        return None
    meta = AppState.load(app).versions.get(live, {})
    if meta.get("fingerprint") != fingerprint or meta.get("status") != "ok":
        return None
    # its socket taking a connection says it runs, without a systemctl (a tenth of
    # the answer's time)
    return live if has_web(app, live) and listening(socket_path(app, live)) else None


def upload_root(app: str):
    return paths.UPLOADS / app


def reserve(call: protocol.Reserve) -> protocol.ReserveResult:
    """Under the app's lock: its next version number, recorded as reserved, and an upload
    directory for it."""
    haproxy.refuse_apps()
    app, who, source = check_app(call.app), call.who, call.source
    try:
        deploy = pwd.getpwnam(paths.DEPLOY_USER)
    except KeyError:
        raise NodeError(f"no user {paths.DEPLOY_USER!r} on this node: run silver setup-node") \
            from None
    with app_lock(app, call.lock_wait):
        if not (paths.APPS / app).is_dir():
            make_dir(paths.APPS / app, 0, 0, 0o700)
        state = AppState.load(app)
        state.last += 1
        version = f"v{state.last}"
        state.versions[version] = {
            "number": state.last, "status": "reserved", "who": who, "source": source,
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        state.save()
        root = make_dir(upload_root(app), deploy.pw_uid, deploy.pw_gid, 0o700)
        # an upload that never arrived (a reservation left by a failed or stopped
        # update) is no basis: rsync would send every file again
        earlier = sorted((p for p in root.iterdir() if _is_version(p.name)
                          and (p / "app" / "app.ini").is_file()),
                         key=lambda p: version_number(p.name))
        upload = make_dir(root / version, deploy.pw_uid, deploy.pw_gid, 0o700)
    basis = earlier[-1] if earlier else None
    return {"version": version, "upload_dir": str(upload),
            "basis": str(basis) if basis else None}


def prune_uploads(app: str, below: str) -> None:
    """Drop upload dirs older than ``below`` (kept: it is the next upload's basis)."""
    root = upload_root(app)
    if not root.is_dir():
        return
    for path in root.iterdir():
        if _is_version(path.name) and version_number(path.name) < version_number(below):
            shutil.rmtree(path, ignore_errors=True)


def _is_version(name: str) -> bool:
    try:
        version_number(name)
    except NodeError:
        return False
    return True
