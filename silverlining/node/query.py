"""``query``: every app on the node, its versions, where they are live, their jobs and backups.

Its own module: what it reads (jobs, backups, the status pages' health) is imported by
no deploy.
"""

from __future__ import annotations

import fnmatch
import pwd
import socket
import subprocess

from silverlining import protocol, tlscerts
from silverlining.appconfig import Limits
from silverlining.node import balancer, certs, hosting, jobs, replica, slices, status
from silverlining.node._state import AppState, all_apps, load_routes
from silverlining.node._util import app_user
from silverlining.node.data import list_backups
from silverlining.node.disk import app_sizes
from silverlining.node.instances import unit_name


def running_units() -> set[str]:
    proc = subprocess.run(["systemctl", "list-units", "silver-*.service", "--state=active",
                           "--plain", "--no-legend"], capture_output=True, text=True)
    return {line.split()[0] for line in proc.stdout.splitlines() if line.strip()}


def query(call: protocol.Query) -> protocol.QueryResult:
    """Every app (or those matching ``globs``): versions, where they are live, their
    workers and crons, the services of the version live (else the newest deployed), its
    kept backups; with ``health``, what each live location's /.silver/health says."""
    routes = load_routes()
    running = running_units()
    apps = []
    for app in all_apps():
        if call.globs and not any(fnmatch.fnmatch(app, g) for g in call.globs):
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
    result = {"node": socket.getfqdn(), "apps": apps, "routes": shown,
              "certs": served_certs(shown, call.all_certs)}
    if sites := balancer.load():        # a balancer node: what it fronts
        result["balancer"] = balancer.query(protocol.BalancerQuery())["sites"] \
            if not call.globs else {loc: s for loc, s in sites.items()
                                    if any(fnmatch.fnmatch(s.get("app", ""), g)
                                           for g in call.globs)}
    if held := hosting.hosted_apps():   # a services node: whose databases, for whom
        result["hosted"] = {app: {"location": hosting.load(app).get("location", ""),
                                  "members": sorted(hosting.load(app).get("members", {})),
                                  "fenced": bool(hosting.load(app).get("fenced"))}
                            for app in held}
    if replication := replica.status():
        result["replication"] = replication
    if call.health:       # what /.silver/health answers, for @APP locations too
        result["health"] = {loc: status.health(loc)[1] for loc, e in shown.items()
                            if e.get("version")}
    return result


def served_certs(routes: dict, everything: bool) -> dict:
    """The certificates of the hosts these locations are live at (and their www.
    names), or every one on the node; in the same answer, so ``silver query`` is one
    round trip."""
    if everything:
        return certs.list_certs()["certs"]
    hosts = {loc.partition("/")[0].removeprefix(".") for loc, e in routes.items()
             if e.get("version")}
    hosts = {h for h in hosts if tlscerts.HOSTNAME_RE.match(h)}
    if not hosts:
        return {}
    return certs.list_certs(sorted(hosts | {f"www.{h}" for h in hosts}))["certs"]
