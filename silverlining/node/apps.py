"""Facts about the node and its apps: ``info``, ``reserve``, ``prepare`` and ``query``.

``reserve`` allocates the next version number of an app (under the app's
lock) and an upload directory owned by the deploy user, pre-seeded by
``--link-dest`` from the previous upload so only changed files cross the
network. Each upload has its own directory, so two uploads never collide.
"""

from __future__ import annotations

import fnmatch
import platform
import pwd
import shutil
import socket
import subprocess
import sys
import time

from silverlining import __version__
from silverlining.node import paths
from silverlining.node._errors import NodeError
from silverlining.node._state import AppState, all_apps, app_lock, load_routes
from silverlining.node._util import app_user, check_app, make_dir, version_number


def info(app: str | None = None) -> dict:
    """The node's Python and platform; with an app, the names of its stored parameters
    (so the CLI can refuse a missing one before uploading anything)."""
    from silverlining.node import params

    result = {"python": f"{sys.version_info.major}.{sys.version_info.minor}",
              "python_full": platform.python_version(), "machine": platform.machine(),
              "hostname": socket.getfqdn(), "silverlining": __version__}
    if app:
        from silverlining.node import deps
        result.update(deps.facts())
        result["params_set"] = sorted(params.load(check_app(app)))
    return result


def prepare(app: str, who: str | None, source: str | None, lock_wait: float,
            needs: list[str], fingerprint: str | None, location: str | None,
            size: int | None = None) -> dict:
    """Everything ``silver update`` asks before uploading, in one round trip: the
    node's Python, which of the app's parameters it lacks, whether the live version
    already is this upload, and else a reserved version.

    Nothing is reserved when the answer stops the deploy (missing parameters, nothing
    changed), so such an answer leaves no trace on the node."""
    result = info(app)
    missing = sorted(set(needs) - set(result["params_set"]))
    if missing:
        return {**result, "missing": missing}
    if fingerprint and location and (live := unchanged(app, location, fingerprint)):
        return {**result, "unchanged": live}
    if size is not None:
        from silverlining.node.disk import check_room
        check_room(app, size)
    return {**result, **reserve(app, who, source, lock_wait)}


def unchanged(app: str, location: str, fingerprint: str) -> str | None:
    """The version live at ``location`` when it was deployed from exactly these files
    (same ``fingerprint``) and its web instance still runs: redeploying it would change
    nothing. ``location`` is canonical (the CLI sends ``str(Location)``)."""
    from silverlining.node.instances import has_web, is_active

    entry = load_routes().get(location) or {}
    live = entry.get("version")
    if entry.get("app") != app or not live:
        return None
    meta = AppState.load(app).versions.get(live, {})
    if meta.get("fingerprint") != fingerprint or meta.get("status") != "ok":
        return None
    return live if has_web(app, live) and is_active(app, live) else None


def upload_root(app: str):
    return paths.UPLOADS / app


def reserve(app: str, who: str | None, source: str | None, lock_wait: float) -> dict:
    check_app(app)
    try:
        deploy = pwd.getpwnam(paths.DEPLOY_USER)
    except KeyError:
        raise NodeError(f"no user {paths.DEPLOY_USER!r} on this node: run silver setup-node") \
            from None
    with app_lock(app, lock_wait):
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
        earlier = sorted((p for p in root.iterdir() if p.is_dir() and _is_version(p.name)),
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


def running_units() -> set[str]:
    proc = subprocess.run(["systemctl", "list-units", "silver-*.service", "--state=active",
                           "--plain", "--no-legend"], capture_output=True, text=True)
    return {line.split()[0] for line in proc.stdout.splitlines() if line.strip()}


def query(globs: list[str], health: bool = False) -> dict:
    """Every app (or those matching ``globs``): versions, where they are live, their
    workers and crons, the services of the version live (else the newest deployed), its
    kept backups; with ``health``, what each live location's /.silver/health says."""
    from silverlining.appconfig import Limits
    from silverlining.node import jobs, slices
    from silverlining.node.data import list_backups
    from silverlining.node.disk import app_sizes
    from silverlining.node.instances import unit_name

    routes = load_routes()
    running = running_units()
    apps = []
    for app in all_apps():
        if globs and not any(fnmatch.fnmatch(app, g) for g in globs):
            continue
        state = AppState.load(app)
        versions = []
        for version in state.ordered():
            meta = dict(state.versions[version])
            meta["version"] = version
            meta["live_at"] = sorted(loc for loc, e in routes.items()
                                     if e.get("app") == app and e.get("version") == version)
            meta["prev_at"] = sorted(loc for loc, e in routes.items()
                                     if e.get("app") == app and e.get("prev") == version)
            meta["running"] = unit_name(app, version) in running
            if meta["live_at"]:
                meta["jobs"] = jobs.status(app, version)
            versions.append(meta)
        live = [v for v in versions if v["live_at"]] or [v for v in versions
                                                          if v.get("status") == "ok"]
        limits = Limits(**live[-1].get("limits", {})) if live else Limits()
        try:
            uid: int | None = pwd.getpwnam(app_user(app)).pw_uid
        except KeyError:
            uid = None
        apps.append({"app": app, "disabled": state.disabled, "versions": versions,
                     "services": live[-1].get("services", []) if live else [],
                     "backups": list_backups(app),
                     "usage": slices.usage(app, limits, uid),
                     "disk": app_sizes(app, [v["version"] for v in versions])})
    shown = {loc: e for loc, e in sorted(routes.items())
             if any(a["app"] == e.get("app") for a in apps)}
    result = {"node": socket.getfqdn(), "apps": apps, "routes": shown}
    if health:       # what /.silver/health answers, for @APP locations too
        from silverlining.node import status

        result["health"] = {loc: status.health(loc)[1] for loc, e in shown.items()
                            if e.get("version")}
    return result


def register(subparsers) -> None:
    p = subparsers.add_parser("info", help="the node's Python and platform")
    p.add_argument("--app")
    p.set_defaults(handler=lambda args: info(args.app))
    p = subparsers.add_parser("reserve", help="allocate an app's next version and upload dir")
    p.add_argument("app")
    p.add_argument("--who")
    p.add_argument("--source")
    p.add_argument("--lock-wait", type=float, default=300.0)
    p.set_defaults(handler=lambda a: reserve(a.app, a.who, a.source, a.lock_wait))
    p = subparsers.add_parser("prepare", help="info, unchanged check and reserve, in one "
                              "call")
    p.add_argument("app")
    p.add_argument("--who")
    p.add_argument("--source")
    p.add_argument("--lock-wait", type=float, default=300.0)
    p.add_argument("--needs", action="append", default=[],
                   help="a parameter the upload does not set itself")
    p.add_argument("--fingerprint", help="of the uploaded files; with --location, no "
                   "version is reserved when the live one has the same")
    p.add_argument("--location")
    p.add_argument("--size", type=int, help="bytes to upload: refused if the disk cannot "
                   "hold them")
    p.set_defaults(handler=lambda a: prepare(a.app, a.who, a.source, a.lock_wait, a.needs,
                                             a.fingerprint, a.location, a.size))
    p = subparsers.add_parser("query", help="apps, versions and where they are live")
    p.add_argument("globs", nargs="*")
    p.add_argument("--health", action="store_true", help="check each live location")
    p.set_defaults(handler=lambda args: query(args.globs, args.health))
