"""``clean``: delete versions nothing points to, beyond the newest N of each app.

A version is kept while a location serves it or keeps it as ``prev`` (the
rollback target). A version still being uploaded (reserved in the last hour)
is left alone. Dependency sets (``node/deps.py``) no remaining version uses go
too.
"""

from __future__ import annotations

import shutil
import time

from silverlining.node import apps, audit, deps, instances, jobs, paths
from silverlining.node._state import AppState, all_apps, app_lock, instance_dir, load_routes, \
    referenced

RESERVED_GRACE = 3600


def _reserved_recently(meta: dict) -> bool:
    try:
        when = time.mktime(time.strptime(meta.get("time", ""), "%Y-%m-%dT%H:%M:%SZ"))
    except ValueError:
        return False
    return time.mktime(time.gmtime()) - when < RESERVED_GRACE


def remove_version(app: str, version: str) -> None:
    instances.remove_unit(app, version)
    jobs.remove_units(app, version)
    shutil.rmtree(instance_dir(app, version), ignore_errors=True)
    shutil.rmtree(paths.ENV / app / f"{version}.config", ignore_errors=True)
    instances.env_path(app, version).unlink(missing_ok=True)
    instances.socket_path(app, version).unlink(missing_ok=True)
    shutil.rmtree(instances.temp_dir(app, version), ignore_errors=True)
    uploads = sorted((p for p in apps.upload_root(app).glob("v*") if p.is_dir()),
                     key=lambda p: int(p.name[1:]) if p.name[1:].isdigit() else 0)
    if uploads and uploads[-1].name != version:   # the newest upload stays: next basis
        shutil.rmtree(apps.upload_root(app) / version, ignore_errors=True)


def clean(args) -> dict:
    removed: list[str] = []
    for app in all_apps():
        with app_lock(app, args.lock_wait):
            table = load_routes()      # under the lock: an activate just before counts
            state = AppState.load(app)
            used = referenced(table, app, include_prev=True)
            ordered = state.ordered()
            newest = set(ordered[-args.keep:]) if args.keep > 0 else set()
            doomed = [v for v in ordered if v not in used and v not in newest
                      and not (state.versions[v].get("status") == "reserved"
                               and _reserved_recently(state.versions[v]))]
            for version in doomed:
                removed.append(f"{app}.{version}")
                if not args.dry_run:
                    remove_version(app, version)
                    del state.versions[version]
            if doomed and not args.dry_run:
                state.save()
    if removed and not args.dry_run:
        instances.daemon_reload()
    removed += [f"dependency set {name}" for name in deps.prune(args.dry_run)]
    if removed and not args.dry_run:
        audit.record("clean-node", None, who=args.who, removed=removed)
    return {"removed": removed, "dry_run": args.dry_run}


def register(subparsers) -> None:
    p = subparsers.add_parser("clean", help="delete versions nothing points to")
    p.add_argument("--keep", type=int, default=3)
    p.add_argument("-n", "--dry-run", action="store_true")
    p.add_argument("--who")
    p.add_argument("--lock-wait", type=float, default=300.0)
    p.set_defaults(handler=clean)
